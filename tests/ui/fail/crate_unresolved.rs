// `crate = "…"` naming a path that does not resolve is one error per attribute, at the value:
// every generated name goes through the one `use <crate>::__private as __catga;` of its block.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64, crate = "::nonexistent")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[handler(crate = "::nonexistent")]
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    Ok(u64::from(cmd.qty))
}

fn main() {}
