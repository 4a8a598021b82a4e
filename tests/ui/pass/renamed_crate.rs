//! `crate = "…"` for a renamed dependency.
extern crate catga_core as my_catga;

use my_catga::{command, handler};

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u32, crate = "my_catga")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Double(pub u32);

#[handler(crate = "my_catga")]
async fn double(cmd: Double) -> Result<u32, Boom> {
    Ok(cmd.0 * 2)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let app = my_catga::Catga::builder().build().unwrap();
        assert_eq!(app.send(Double(21)).await.unwrap(), 42);
    });
}
