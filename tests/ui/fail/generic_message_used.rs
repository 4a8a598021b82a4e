// A generic message that is also handled and sent: the shape error is the only error, because
// the macro still implements the message traits for the rejected type.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Create<T> {
    pub item: T,
}

#[handler]
async fn create(cmd: Create<String>) -> Result<u64, Boom> {
    Ok(cmd.item.len() as u64)
}

async fn run(app: Catga) -> Result<u64, catga_core::Error> {
    app.send(Create { item: String::new() }).await
}

fn main() {
    let _ = run;
}
