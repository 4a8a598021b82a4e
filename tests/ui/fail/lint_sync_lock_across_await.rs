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
    placed: Ledger,
}

/// Has a `lock` method whose "guard" is `Send`, so only the lint objects (a real
/// `std::sync::MutexGuard` held across an await also makes the future `!Send`).
pub struct Ledger;

impl Ledger {
    fn lock(&self) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder) -> Result<u64, StoreError> {
        let mut placed = self.placed.lock()?;
        tokio::task::yield_now().await;
        placed.push(cmd.lines.len() as u64);
        Ok(placed.len() as u64)
    }
}
fn main() {}
