use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

pub struct Db;

#[handler]
async fn load(db: &Db) -> Result<(), Boom> {
    let _ = db;
    Ok(())
}

fn main() {}
