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
    let _stream = std::net::TcpStream::connect("127.0.0.1:9").map_err(|_| StoreError)?;
    Ok(cmd.lines.len() as u64)
}
fn main() {}
