use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

pub struct Orders;

#[handler]
impl Orders {
    fn new() -> Self {
        Orders
    }

    async fn place(&self, cmd: PlaceOrder) -> Result<u64, Boom> {
        Ok(u64::from(cmd.qty))
    }
}

fn main() {}
