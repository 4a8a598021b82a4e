use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command]
#[derive(Debug, Clone, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

fn main() {}
