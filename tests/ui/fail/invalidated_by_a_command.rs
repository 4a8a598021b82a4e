use catga_core::prelude::*;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadPrices;

#[query(output = u64, cache_ttl = "30s", invalidated_by(ReloadPrices))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[handler]
async fn price(q: GetPrice) -> Result<u64, Boom> {
    Ok(q.sku)
}

#[handler]
async fn reload(_cmd: ReloadPrices) -> Result<(), Boom> {
    Ok(())
}

fn main() {}
