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

pub struct Orders {
    placed: std::sync::Mutex<Vec<u64>>,
    stock: std::sync::Mutex<u64>,
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder) -> Result<u64, StoreError> {
        let mut placed = self.placed.lock().map_err(|_| StoreError)?;
        let mut stock = self.stock.lock().map_err(|_| StoreError)?;
        *stock -= cmd.lines.len() as u64;
        placed.push(*stock);
        Ok(*stock)
    }
}
fn main() {}
