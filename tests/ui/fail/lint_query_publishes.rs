use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError;

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountOrders;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrdersCounted {
    pub count: u64,
}

#[handler]
async fn count(_q: CountOrders, ctx: &Context) -> Result<u64, StoreError> {
    ctx.publish(OrdersCounted { count: 3 }).map_err(|_| StoreError)?;
    Ok(3)
}

fn main() {}
