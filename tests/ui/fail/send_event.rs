use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[handler]
async fn on_placed(event: &OrderPlaced) -> Result<(), Boom> {
    let _ = event;
    Ok(())
}

async fn run(app: Catga) {
    let _ = app.send(OrderPlaced { id: 1 }).await;
}

fn main() {
    let _ = run;
}
