//! The slot pool: an in-process publish leases a block of handler slots, and gives it back
//! however the publish ends, with every handler future dropped exactly once. A block that did
//! not come back would make the next publish allocate a new one: allocations are counted
//! exactly on the test's thread.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use futures::FutureExt;

use crate::common::{Act, Down, Ending, HELD, code, end_as, perform};

/// Allocations made on this thread while `work` runs to its end.
async fn allocations<F: Future>(work: F) -> u64 {
    crate::counting_alloc::allocations_of(work).await
}

/// Per-test counters of the two handlers' futures dropped (allocation-free to update).
static DROPPED: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];

/// Counts its drop under `DROPPED[index]`.
struct OnDrop(usize);

impl Drop for OnDrop {
    fn drop(&mut self) {
        DROPPED[self.0].fetch_add(1, Ordering::SeqCst);
    }
}

/// An event with two handlers that allocate nothing.
#[event(local)]
#[derive(Debug, Clone)]
pub struct Tick {
    pub counter: usize,
    pub act: Act,
}

#[handler]
async fn tick_a(tick: &Tick) -> Result<(), Down> {
    let _dropped = OnDrop(tick.counter);
    perform(tick.act).await
}

#[handler]
async fn tick_b(tick: &Tick) -> Result<(), Down> {
    let _dropped = OnDrop(tick.counter);
    perform(tick.act).await
}

/// Publishes once so the thread has a block, ends a publish as `ending`, then checks that the
/// next publish finds the block again.
async fn block_returns_after(ending: Ending, counter: usize) {
    let app = Catga::builder().build().unwrap();
    app.publish(Tick {
        counter,
        act: Act::Ok,
    })
    .await
    .unwrap();
    let before = DROPPED[counter].load(Ordering::SeqCst);
    match ending {
        Ending::Drop | Ending::Panic => {
            end_as(ending, |act, ctx| {
                app.publish_with(Tick { counter, act }, ctx)
            })
            .await;
        }
        // A caller's deadline or cancellation ends the caller's wait; the handlers go on in
        // the background (an event is a fact): they run to their end, then the block returns.
        Ending::Deadline | Ending::Cancel => {
            let ctx = match ending {
                Ending::Deadline => Context::new().with_timeout(HELD),
                _ => {
                    let token = catga_core::CancellationToken::new();
                    token.cancel();
                    Context::new().with_cancellation(token)
                }
            };
            let ended = app
                .publish_with(
                    Tick {
                        counter,
                        act: Act::Sleep(50),
                    },
                    ctx,
                )
                .await;
            assert_ne!(code(&ended), "ok", "{ending:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        DROPPED[counter].load(Ordering::SeqCst) - before,
        2,
        "{ending:?}: each handler's future dropped once"
    );
    let allocated = allocations(async {
        app.publish(Tick {
            counter,
            act: Act::Ok,
        })
        .await
        .unwrap();
    })
    .await;
    assert_eq!(allocated, 0, "{ending:?}: the block came back to the pool");
}

#[tokio::test(start_paused = true)]
async fn a_publish_dropped_mid_way_returns_its_block() {
    block_returns_after(Ending::Drop, 0).await;
}

#[tokio::test(start_paused = true)]
async fn a_publish_whose_handler_panics_returns_its_block() {
    block_returns_after(Ending::Panic, 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_publish_past_its_deadline_returns_its_block_when_the_handlers_end() {
    block_returns_after(Ending::Deadline, 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_publish_returns_its_block_when_the_handlers_end() {
    block_returns_after(Ending::Cancel, 3).await;
}

/// The panic also reaches the publisher of a direct publish (it is an ordinary call).
#[tokio::test(start_paused = true)]
async fn a_direct_publish_reports_its_handlers_panic_to_the_caller() {
    let app = Catga::builder().build().unwrap();
    let ended = AssertUnwindSafe(app.publish(Tick {
        counter: 4,
        act: Act::Panic,
    }))
    .catch_unwind()
    .await;
    assert!(ended.is_err());
}
