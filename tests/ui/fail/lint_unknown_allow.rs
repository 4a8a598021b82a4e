use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError;

#[command(output = u64, allow(message_too_big))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub lines: Vec<u64>,
}

// An unknown rule, a rule that is silenced elsewhere, and an error, which cannot be silenced.
#[handler(allow(unwrap_handler, message_too_large, handler_not_async))]
async fn place(cmd: PlaceOrder) -> Result<u64, StoreError> {
    Ok(cmd.lines.len() as u64)
}

fn main() {}
