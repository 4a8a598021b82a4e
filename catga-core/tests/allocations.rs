//! Heap allocations per dispatch, counted exactly with a counting global allocator.
//!
//! Counts are deterministic, so they are asserted; time is not (see `benches/dispatch.rs`).

mod counting_alloc;

use std::convert::Infallible;
use std::future::Future;

use catga_core::prelude::*;

/// Allocations made on this thread while polling `make()`'s futures to completion `CALLS`
/// times (after a warm-up). Exact: the tests compare it with `CALLS × expected per call`.
fn allocations<F: Future>(mut make: impl FnMut() -> F) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up: slot assignment and lazy statics happen on first use.
        for _ in 0..3 {
            make().await;
        }
        counting_alloc::allocations_of(async {
            for _ in 0..CALLS {
                make().await;
            }
        })
        .await
    })
}

const CALLS: u64 = 1_000;

#[command(output = u64, local)]
#[derive(Clone)]
pub struct Add(pub u64, pub u64);

#[handler]
async fn add(cmd: Add) -> Result<u64, Infallible> {
    Ok(cmd.0 + cmd.1)
}

#[event(local)]
#[derive(Clone)]
pub struct Ticked(pub u64);

#[handler]
async fn tick_a(event: &Ticked) -> Result<(), Infallible> {
    std::hint::black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_b(event: &Ticked) -> Result<(), Infallible> {
    std::hint::black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_c(event: Ticked) -> Result<(), Infallible> {
    std::hint::black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_d(event: &Ticked, ctx: &Context) -> Result<(), Infallible> {
    std::hint::black_box((event.0, ctx.attempt()));
    Ok(())
}

/// A handler whose future holds more than `INLINE_FUTURE_BYTES` across an await.
#[command(output = u64, local)]
pub struct Big(pub u64);

#[handler]
async fn big(cmd: Big) -> Result<u64, Infallible> {
    let buffer = [cmd.0 as u8; 2 * catga_core::INLINE_FUTURE_BYTES];
    tokio::task::yield_now().await;
    Ok(u64::from(buffer.last().copied().unwrap_or_default()))
}

struct Noop;

impl Behavior for Noop {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        next.run(msg).await
    }
}

catga_core::static_app! {
    pub struct StaticAdd {
        Add => add,
    }
}

#[test]
fn send_allocates_nothing() {
    let app = Catga::builder().build().unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn send_through_three_noop_behaviors_allocates_nothing() {
    let app = Catga::builder()
        .layer(Noop)
        .layer(Noop)
        .layer(Noop)
        .build()
        .unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn publish_to_four_handlers_allocates_nothing() {
    let app = Catga::builder().build().unwrap();
    let total = allocations(|| async { app.publish(Ticked(1)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn static_send_allocates_nothing() {
    let app = StaticAdd::builder().build().unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn a_future_over_the_inline_budget_costs_one_allocation() {
    let app = Catga::builder().build().unwrap();
    let total = allocations(|| async { app.send(Big(7)).await.unwrap() });
    assert_eq!(total, CALLS);
}

#[test]
fn tracing_with_no_subscriber_allocates_nothing() {
    let app = Catga::builder().layer(Tracing).build().unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn the_built_in_stack_allocates_nothing_on_success() {
    let app = Catga::builder()
        .layer(Tracing)
        .layer(Timeout::new(std::time::Duration::from_secs(5)))
        .layer(Retry::exponential(3))
        .layer(Validation)
        .build()
        .unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn a_follow_up_event_to_four_handlers_costs_eleven_allocations() {
    // The follow-up path is type-erased (the context cannot name the app's types), so it pays:
    // the boxed event, the context's queue and its Vec (3); the boxed follow-up and publish
    // futures (2); `join_all`'s futures and results (2); one boxed future per handler (4).
    let app = Catga::builder().build().unwrap();
    let total = allocations(|| async { app.send(Announce).await.unwrap() });
    assert_eq!(total, 11 * CALLS);
}

#[command(local)]
pub struct Announce;

#[handler]
async fn announce(_cmd: Announce, ctx: &Context) -> Result<(), Error> {
    ctx.publish(Ticked(9))
}

#[test]
fn protective_behaviors_allocate_nothing_on_their_happy_path() {
    use catga_core::behavior::{CircuitBreaker, ConcurrencyLimit, RateLimit, Trip};
    use catga_core::policy::Rate;
    let app = Catga::builder()
        .layer(CircuitBreaker::new(Trip::ConsecutiveFailures(5)))
        .layer(RateLimit::global(Rate::per_second(u32::MAX)).burst(u32::MAX))
        .layer(ConcurrencyLimit::per_message(64))
        .build()
        .unwrap();
    let total = allocations(|| async { app.send(Add(1, 2)).await.unwrap() });
    assert_eq!(total, 0);
}

#[test]
fn an_idempotency_hit_allocates_nothing() {
    use catga_core::behavior::Idempotency;
    #[command(output = u64)]
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Pay(pub u64);
    #[handler]
    async fn pay(cmd: Pay) -> Result<u64, Infallible> {
        Ok(cmd.0)
    }
    let app = Catga::builder()
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = uuid::Uuid::now_v7();
    let total = allocations(|| async {
        app.send_with(Pay(5), Context::new().with_message_id(id))
            .await
            .unwrap()
    });
    assert_eq!(total, 0, "the first call (a miss) is in the warm-up");
}

/// Not an allocation, but the same kind of cost: a caller moves `publish`'s future (into
/// `join_all`, a spawned task), copying all of it each time, and a future boxed by the caller
/// (a spawned task, `FuturesUnordered`) over about 1 KB takes the allocator's slower path. The
/// handlers' inline slots are leased, not part of it (docs/performance.md); the bound leaves
/// room for compiler changes.
#[test]
fn the_publish_future_stays_small() {
    let app = Catga::builder().build().unwrap();
    let size = std::mem::size_of_val(&app.publish(Ticked(1)));
    assert!(size <= 900, "the publish future is {size} bytes");
}

/// Publishes running at once each lease a block of slots; once as many blocks exist as
/// publishes ran at once, none allocates.
#[test]
fn concurrent_publishes_reuse_their_slot_blocks() {
    let app = Catga::builder().build().unwrap();
    let total = allocations(|| async {
        let (a, b, c) = futures::join!(
            app.publish(Ticked(1)),
            app.publish(Ticked(2)),
            app.publish(Ticked(3))
        );
        a.and(b).and(c).unwrap();
    });
    assert_eq!(total, 0);
}
