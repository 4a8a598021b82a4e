// The reproducer `mistakes/m13_ouput_typo.rs`: one error, naming the argument meant.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("shop error")]
pub struct ShopError;

#[command(ouput = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, ShopError> {
    Ok(u64::from(cmd.qty))
}

fn main() {}
