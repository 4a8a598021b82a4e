// Warnings are denied so the rule's warning is checked as this case's error.
#![deny(deprecated)]

use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub lines: Vec<u64>,
}

#[command(local)]
pub struct Upload {
    pub chunks: Vec<[u8; 8192]>,
    pub thumbnail: [u8; 8192],
}

#[handler]
async fn upload(cmd: Upload) -> Result<(), StoreError> {
    let _ = cmd.thumbnail.len() + cmd.chunks.len();
    Ok(())
}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, StoreError> {
    Ok(cmd.lines.len() as u64)
}
fn main() {}
