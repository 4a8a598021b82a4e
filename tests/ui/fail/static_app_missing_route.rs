use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelOrder {
    pub id: u64,
}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, Boom> {
    Ok(u64::from(cmd.qty))
}

#[handler]
async fn cancel(cmd: CancelOrder) -> Result<u64, Boom> {
    Ok(cmd.id)
}

catga_core::static_app! {
    pub struct Shop {
        PlaceOrder => place,
    }
}

async fn run(app: catga_core::StaticCatga<Shop>) {
    let _ = app.send(CancelOrder { id: 1 }).await;
}

fn main() {
    let _ = run;
}
