use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[query]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOrder {
    pub id: u64,
}

fn main() {}
