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

impl Clone for Orders {
    fn clone(&self) -> Self {
        Orders
    }
}

#[handler]
impl Default for Orders {
    fn default() -> Self {
        Orders
    }
}

fn main() {}
