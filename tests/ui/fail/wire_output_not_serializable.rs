use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

pub struct Receipt {
    pub id: u64,
}

#[command(output = Receipt)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

fn main() {}
