//! What becomes of a dead letter: replaying it runs what failed, and only that; a replay
//! that fails again leaves the letter where it was. Failures of follow-up events are kept
//! too, in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::DeadLetter;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{FailureStage, MemoryDeadLetterStore};
use catga_core::transport::MemoryTransport;

#[derive(Debug, thiserror::Error)]
#[error("address invalid")]
pub struct Invalid;

/// Runs per handler, and whether the flaky one is fixed.
#[derive(Default)]
pub struct Runs {
    ok: AtomicU32,
    flaky: AtomicU32,
    fixed: AtomicBool,
    placed: AtomicU32,
}

fn get(n: &AtomicU32) -> u32 {
    n.load(Ordering::SeqCst)
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mixed {
    pub n: u32,
}

pub mod shipping {
    use super::*;

    #[handler]
    async fn mixed_ok(_event: &Mixed, runs: &Runs) -> Result<(), Invalid> {
        runs.ok.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Fails until it is fixed.
    #[handler]
    async fn mixed_flaky(_event: &Mixed, runs: &Runs) -> Result<(), Invalid> {
        runs.flaky.fetch_add(1, Ordering::SeqCst);
        if runs.fixed.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

async fn settle(done: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The shipping service on `bus`, running this file's shipping handlers.
fn shipping(bus: &MemoryTransport, runs: &Arc<Runs>) -> Catga {
    Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("replay::shipping::"))
        .build()
        .unwrap()
}

/// A publisher on `bus` with no handlers.
fn orders(bus: &MemoryTransport) -> Catga {
    Catga::builder()
        .transport(bus.clone())
        .service("orders")
        .handlers(|_| false)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_replay_runs_the_handler_that_failed_and_a_failed_replay_keeps_the_letter() {
    let bus = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let shipping = shipping(&bus, &runs);
    let serving = shipping.serve().await.unwrap();
    let orders = orders(&bus);
    orders.publish(Mixed { n: 1 }).await.unwrap();
    let store = shipping.dead_letters();
    settle(|| futures::FutureExt::now_or_never(store.count_dyn()).and_then(Result::ok) == Some(1))
        .await;
    let kept = store.list_dyn(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].handler.as_deref(),
        Some("replay::shipping::mixed_flaky")
    );
    assert_eq!((get(&runs.ok), get(&runs.flaky)), (1, 1));

    // Not fixed yet: the replay fails, and the letter stays (same id, one more attempt).
    let id = kept[0].id;
    assert!(shipping.replay_dead_letter(store, id).await.is_err());
    let after = store.list_dyn(10).await.unwrap();
    assert_eq!(after.len(), 1, "a failed replay must not lose the letter");
    assert_eq!(after[0].id, id);
    assert_eq!(after[0].attempts, kept[0].attempts + 1);
    assert_eq!(
        (get(&runs.ok), get(&runs.flaky)),
        (1, 2),
        "only the handler that failed ran again"
    );

    // Fixed: the replay succeeds and the letter is gone.
    runs.fixed.store(true, Ordering::SeqCst);
    assert_eq!(shipping.replay_dead_letter(store, id).await.unwrap(), None);
    assert_eq!(store.count_dyn().await.unwrap(), 0);
    assert_eq!((get(&runs.ok), get(&runs.flaky)), (1, 3));
    serving.shutdown().await;
}

pub mod orders {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Place {
        pub n: u32,
    }

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Placed {
        pub n: u32,
    }

    #[handler]
    async fn place(cmd: Place, ctx: &Context, runs: &Runs) -> Result<u32, Invalid> {
        runs.placed.fetch_add(1, Ordering::SeqCst);
        ctx.publish(Placed { n: cmd.n }).map_err(|_| Invalid)?;
        Ok(cmd.n)
    }

    /// Takes 300 ms.
    #[command]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Hold;

    #[handler]
    async fn hold(_cmd: Hold) -> Result<(), Invalid> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// Fails for 13, panics for 66.
    #[handler(allow(panic_in_handler))]
    async fn on_placed(event: &Placed) -> Result<(), Invalid> {
        match event.n {
            66 => panic!("a bug in a follow-up handler"),
            13 => Err(Invalid),
            _ => Ok(()),
        }
    }
}

fn local(runs: &Arc<Runs>) -> catga_core::CatgaBuilder {
    Catga::builder()
        .state_arc(runs.clone())
        .handlers(|h| h.name.starts_with("replay::orders::"))
}

#[tokio::test]
async fn a_failed_follow_up_is_kept_in_process_too() {
    let runs = Arc::new(Runs::default());
    let app = local(&runs).build().unwrap();
    assert_eq!(app.send(orders::Place { n: 13 }).await.unwrap(), 13);
    assert_eq!(app.send(orders::Place { n: 66 }).await.unwrap(), 66);
    let kept = app.dead_letters().list_dyn(10).await.unwrap();
    let mut codes: Vec<&str> = kept.iter().map(|r| r.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["handler", "panic"], "{kept:?}");
    assert!(
        kept.iter()
            .all(|r| r.message == "Placed" && r.stage == FailureStage::Handler)
    );
    assert!(
        kept.iter().all(|r| r.causation_id.is_some()),
        "caused by the command"
    );
}

#[tokio::test]
async fn with_a_dead_letter_layer_a_failed_follow_up_is_kept_once_there() {
    let runs = Arc::new(Runs::default());
    let letters = MemoryDeadLetterStore::new();
    let app = local(&runs)
        .layer(DeadLetter::new(letters.clone()))
        .build()
        .unwrap();
    app.send(orders::Place { n: 13 }).await.unwrap();
    app.send(orders::Place { n: 66 }).await.unwrap();
    let kept = letters.list(10).await.unwrap();
    assert_eq!(
        kept.len(),
        2,
        "the layer keeps both, the panic included: {kept:?}"
    );
    assert_eq!(
        app.dead_letters().count_dyn().await.unwrap(),
        0,
        "and nothing twice"
    );
}

// On the real clock: the deadline travels as wall-clock time, which a paused Tokio clock
// does not move.
#[tokio::test]
async fn a_request_whose_caller_stopped_waiting_is_not_started() {
    let bus = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let server = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("orders")
        .handlers(|h| h.name.starts_with("replay::orders::"))
        .serve_max_in_flight(1)
        .build()
        .unwrap();
    let serving = server.serve().await.unwrap();
    // The only slot is taken by a long request; the next waits in the queue past the time
    // its caller waits (its request timeout: the caller set no deadline of its own).
    let busy = Catga::builder()
        .transport(bus.clone())
        .service("busy")
        .handlers(|_| false)
        .build()
        .unwrap();
    let hog = Catga::builder()
        .transport(bus.clone())
        .service("hog")
        .handlers(|_| false)
        .request_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let slow = tokio::spawn(async move { busy.send(orders::Hold).await });
    tokio::task::yield_now().await;
    let err = hog.send(orders::Place { n: 2 }).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    slow.await.unwrap().unwrap();
    // Once the server took it (and settled it), count.
    while bus.backlog("orders") > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        get(&runs.placed),
        0,
        "taken after its caller gave up: never started"
    );
    serving.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_serving_stops_consuming() {
    let bus = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let shipping = shipping(&bus, &runs);
    drop(shipping.serve().await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let orders = orders(&bus);
    orders.publish(Mixed { n: 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        get(&runs.ok),
        0,
        "nothing is taken behind a dropped `Serving`"
    );
}
