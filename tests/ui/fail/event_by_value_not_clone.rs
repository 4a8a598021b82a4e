use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[event]
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[handler]
async fn on_placed(event: OrderPlaced) -> Result<(), Boom> {
    let _ = event;
    Ok(())
}

fn main() {}
