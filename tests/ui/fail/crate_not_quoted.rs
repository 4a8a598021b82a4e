// `crate = …` takes the path in quotes: written without them, it is one error at the value
// that says to quote it, for every macro that takes it.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64, crate = catga_core)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[handler(crate = ::catga_core)]
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    Ok(u64::from(cmd.qty))
}

fn main() {}
