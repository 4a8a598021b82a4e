use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

pub struct Db;

#[handler]
async fn place(cmd: PlaceOrder, db: &mut Db) -> Result<u64, Boom> {
    let _ = db;
    Ok(u64::from(cmd.qty))
}

fn main() {}
