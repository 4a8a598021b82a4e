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

/// Stands in for the `reqwest` crate: the rule is about the call as written.
mod reqwest {
    pub mod blocking {
        pub fn get(_url: &str) -> Result<String, std::io::Error> {
            Ok(String::new())
        }
    }
}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, StoreError> {
    let body = reqwest::blocking::get("http://127.0.0.1/prices").map_err(|_| StoreError)?;
    Ok(body.len() as u64 + cmd.lines.len() as u64)
}
fn main() {}
