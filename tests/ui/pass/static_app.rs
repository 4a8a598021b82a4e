//! `static_app!` with requests, events and state.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64, local)]
pub struct Add(pub u64, pub u64);

#[event(local)]
#[derive(Clone)]
pub struct Added(pub u64);

pub struct Offset(u64);

#[handler]
async fn add(cmd: Add, offset: &Offset, ctx: &Context) -> Result<u64, Boom> {
    ctx.publish(Added(cmd.0 + cmd.1)).map_err(|_| Boom)?;
    Ok(cmd.0 + cmd.1 + offset.0)
}

#[handler]
async fn log_added(event: &Added) -> Result<(), Boom> {
    let _ = event.0;
    Ok(())
}

#[handler]
async fn audit_added(event: Added) -> Result<(), Boom> {
    let _ = event.0;
    Ok(())
}

catga_core::static_app! {
    /// A calculator whose handlers are fixed at compile time.
    pub struct Calculator {
        Add => add,
        Added => [log_added, audit_added],
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let app = Calculator::builder().state(Offset(1)).layer(Validation).build().unwrap();
        assert_eq!(app.send(Add(2, 3)).await.unwrap(), 6);
        app.publish(Added(1)).await.unwrap();
    });
}
