use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[handler]
async fn place(cmd: PlaceOrder, other: OrderPlaced) -> Result<u64, Boom> {
    let _ = other;
    Ok(u64::from(cmd.qty))
}

fn main() {}
