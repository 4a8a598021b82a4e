// State shared by concurrent handlers must be `Sync`. rustc reports the missing `Sync` at each
// place the state must cross threads (the handler's future, the state table, the builder):
// auto-trait errors cannot be merged by a library (recorded in docs/lints.md, CATGA041).
use catga_core::prelude::*;
use std::cell::RefCell;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[derive(Default)]
pub struct Counter {
    n: RefCell<u64>,
}

#[handler]
async fn place(cmd: PlaceOrder, c: &Counter) -> Result<u64, Boom> {
    *c.n.borrow_mut() += u64::from(cmd.qty);
    Ok(*c.n.borrow())
}

fn main() {
    let _ = Catga::builder().state(Counter::default()).build();
}
