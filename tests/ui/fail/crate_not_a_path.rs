// `crate = "…"` must name a path (the renamed runtime crate): the same error, once, at the
// string, from every macro that takes it.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64, crate = "not a path")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[handler(crate = "1catga")]
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    Ok(u64::from(cmd.qty))
}

catga_core::static_app! {
    #[catga(crate = "::catga core")]
    pub struct Shop {
        PlaceOrder => place,
    }
}

fn main() {}
