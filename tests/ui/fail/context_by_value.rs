// The reproducer `mistakes/m24_context_by_value.rs`: one error, citing the rule about the
// context (CATGA018), not the one about mutable state.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("shop error")]
pub struct ShopError;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[handler]
async fn place(cmd: PlaceOrder, ctx: Context) -> Result<u64, ShopError> {
    let _ = ctx;
    Ok(u64::from(cmd.qty))
}

fn main() {}
