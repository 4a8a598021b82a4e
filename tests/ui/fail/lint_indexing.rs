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

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, StoreError> {
    Ok(cmd.lines[0])
}
fn main() {}
