use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[event]
#[derive(Debug, Clone, Serialize)]
pub struct OrderPlaced {
    pub id: u64,
}

fn main() {}
