//! Code that looks like what the expansion-time rules look for, but is fine: none of it may
//! warn (warnings are denied). One block per rule, named by its id.
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

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

/// CATGA062: exactly at the budget (4 KiB of inline array), and bulk data in a `Vec`.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    pub chunks: Vec<Vec<u8>>,
    #[serde(with = "serde_bytes_free")]
    pub header: [u8; 4096],
}

/// A serde helper for the 4096-byte array (serde derives arrays only up to 32 elements).
mod serde_bytes_free {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 4096], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 4096], D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        let mut out = [0u8; 4096];
        let n = bytes.len().min(4096);
        out[..n].copy_from_slice(&bytes[..n]);
        Ok(out)
    }
}

pub struct Orders {
    placed: Mutex<Vec<u64>>,
    stock: Mutex<u64>,
    audit: tokio::sync::Mutex<Vec<u64>>,
}

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder, ctx: &Context) -> Result<u64, StoreError> {
        // CATGA020: the async sleep.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        // CATGA021: async file I/O, awaited.
        let _ = tokio::fs::metadata("Cargo.toml").await;
        // CATGA022: async network I/O, awaited.
        let _ = tokio::net::TcpStream::connect("127.0.0.1:9").await;
        // CATGA025: the guard is scoped before the await, or dropped.
        let count = {
            let placed = self.placed.lock().map_err(|_| StoreError)?;
            placed.len() as u64
        };
        let placed = self.placed.lock().map_err(|_| StoreError)?;
        drop(placed);
        // An async mutex may be held across an await.
        let mut audit = self.audit.lock().await;
        tokio::task::yield_now().await;
        audit.push(count);
        drop(audit);
        // CATGA042: one lock at a time; the first guard is a temporary.
        let first = self.placed.lock().map_err(|_| StoreError)?.first().copied();
        let stock = self.stock.lock().map_err(|_| StoreError)?;
        // CATGA030/031: `unwrap_or`, `unwrap_or_default`, `?` instead of `unwrap`/`expect`.
        let first = first.unwrap_or(0) + cmd.lines.first().copied().unwrap_or_default();
        // CATGA033: `get`, and a full-range slice, cannot panic.
        let second = cmd.lines.get(1).copied().ok_or(StoreError)?;
        let all = &cmd.lines[..];
        // CATGA050 does not apply: a command may publish through its context.
        ctx.publish(OrderPlaced { id: first }).map_err(|_| StoreError)?;
        Ok(first + second + *stock + all.len() as u64)
    }
}

#[handler]
async fn upload(cmd: Upload) -> Result<(), StoreError> {
    // CATGA024: `.await`, not `block_on`; CATGA032: an error, not `panic!`.
    let n = async { cmd.chunks.len() }.await;
    if n == 0 {
        return Err(StoreError);
    }
    Ok(())
}

#[handler]
async fn placed(event: &OrderPlaced, ctx: &Context) -> Result<(), StoreError> {
    // An event handler may publish follow-up events.
    ctx.publish(OrderPlaced { id: event.id + 1 }).map_err(|_| StoreError)
}

fn main() {}
