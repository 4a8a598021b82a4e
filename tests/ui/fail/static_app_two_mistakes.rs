// Two mistakes in one `static_app!`: both are reported in one build (an event with no
// handlers, and a message listed twice), each once, at its own line.
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
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    Ok(u64::from(cmd.qty))
}

catga_core::static_app! {
    pub struct Shop {
        OrderPlaced => [],
        PlaceOrder => place,
        PlaceOrder => place,
    }
}

fn main() {}
