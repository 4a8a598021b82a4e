use catga_core::prelude::*;

#[command(rate_limit = "fast", concurrency = 0, skip(retries), cache_ttl = "30s")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeCard {
    pub cents: u64,
}

#[query(output = u64, cache_ttl = "soon", rate_limit = "0/s")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
}

fn main() {}
