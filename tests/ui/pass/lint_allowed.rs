//! Every expansion-time warning silenced on its item: nothing may warn (warnings are denied).
#![deny(deprecated)]

use std::sync::Mutex;

use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub lines: Vec<u64>,
}

#[command(local, allow(message_too_large))]
pub struct Upload {
    pub chunks: Vec<[u8; 8192]>,
}

pub struct Orders {
    placed: Mutex<Vec<u64>>,
    stock: Mutex<u64>,
    ledger: Ledger,
}

/// Has a `lock` method whose "guard" is `Send`, so holding it across an await compiles and
/// only the lint can object.
pub struct Ledger;

impl Ledger {
    fn lock(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[handler(allow(
    blocking_sleep,
    blocking_fs,
    blocking_net,
    block_on_in_handler,
    sync_lock_across_await,
    unwrap_in_handler,
    expect_in_handler,
    panic_in_handler,
    indexing_in_handler,
    nested_locks
))]
impl Orders {
    async fn place(&self, cmd: PlaceOrder) -> Result<u64, StoreError> {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let _ = std::fs::metadata("Cargo.toml");
        let _ = std::net::TcpStream::connect("127.0.0.1:9");
        let n = tokio::runtime::Handle::current().block_on(async { 1 });
        let entries = self.ledger.lock()?;
        tokio::task::yield_now().await;
        let placed = self.placed.lock().unwrap();
        let stock = self.stock.lock().expect("stock");
        if cmd.lines.is_empty() {
            panic!("no lines");
        }
        Ok(cmd.lines[0] + placed.len() as u64 + *stock + n + entries)
    }
}

#[handler]
async fn upload(cmd: Upload) -> Result<(), StoreError> {
    let _ = cmd.chunks.len();
    Ok(())
}

fn main() {}
