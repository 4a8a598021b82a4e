// A handler's future runs on any worker thread, so it must be `Send`: a non-`Send` value held
// across an `.await` is reported at the handler, with rustc's note at the value and the await.
use catga_core::prelude::*;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

async fn reserve() {}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    let held = Rc::new(cmd.qty);
    reserve().await;
    Ok(u64::from(*held))
}

fn main() {}
