use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

pub struct Db;

#[handler]
async fn place(ctx: &Context) -> Result<u64, Boom> {
    let _ = ctx;
    Ok(1)
}

fn main() {}
