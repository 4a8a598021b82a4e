//! Sagas in one process: forward steps, compensation in reverse, retried and dead-lettered
//! compensations, resuming from a stored state. Timing on Tokio's paused clock. Step identity
//! is in `saga_identity.rs`, steps handled by other services in `saga_routing.rs`, message ids
//! and `Idempotency` in `saga_idempotency.rs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::saga::{Saga, SagaBuilder, SagaError, SagaState, SagaStatus};
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use tokio::time::Instant;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub qty: u32,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub reservation: u64,
}

#[command(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub charge: String,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub qty: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Records every command it handles, and fails as configured.
#[derive(Default)]
pub struct World {
    log: Mutex<Vec<String>>,
    /// Ship fails when set.
    ship_fails: std::sync::atomic::AtomicBool,
    /// Charge fails when set.
    charge_fails: std::sync::atomic::AtomicBool,
    /// Release fails this many more times.
    release_failures: AtomicU32,
    /// Refund always fails when set.
    refund_broken: std::sync::atomic::AtomicBool,
    correlations: Mutex<Vec<(String, uuid::Uuid, Option<String>)>>,
}

impl World {
    fn note(&self, what: String, ctx: &Context) {
        self.correlations.lock().unwrap().push((
            what.clone(),
            ctx.correlation_id(),
            ctx.header("catga-saga-step").map(str::to_string),
        ));
        self.log.lock().unwrap().push(what);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[handler(allow(unwrap_in_handler))]
impl World {
    async fn reserve(&self, cmd: Reserve, ctx: &Context) -> Result<u64, Refused> {
        self.note(format!("reserve {}", cmd.qty), ctx);
        Ok(7)
    }

    async fn release(&self, cmd: Release, ctx: &Context) -> Result<(), Refused> {
        self.note(format!("release {}", cmd.reservation), ctx);
        if self
            .release_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Refused("stock service down".into()));
        }
        Ok(())
    }

    async fn charge(&self, cmd: Charge, ctx: &Context) -> Result<String, Refused> {
        self.note(format!("charge {}", cmd.cents), ctx);
        if self.charge_fails.load(Ordering::SeqCst) {
            return Err(Refused("card declined".into()));
        }
        Ok("ch_1".into())
    }

    async fn refund(&self, cmd: Refund, ctx: &Context) -> Result<(), Refused> {
        self.note(format!("refund {}", cmd.charge), ctx);
        if self.refund_broken.load(Ordering::SeqCst) {
            return Err(Refused("bank down".into()));
        }
        Ok(())
    }

    async fn ship(&self, cmd: Ship, ctx: &Context) -> Result<(), Refused> {
        self.note(format!("ship {}", cmd.qty), ctx);
        if self.ship_fails.load(Ordering::SeqCst) {
            return Err(Refused("no courier".into()));
        }
        Ok(())
    }
}

pub struct Order {
    qty: u32,
    cents: u64,
}

fn checkout() -> SagaBuilder<Order> {
    Saga::builder("checkout")
        .step(
            "reserve",
            |o: &Order| Reserve { qty: o.qty },
            |_, id| Release { reservation: id },
        )
        .step(
            "charge",
            |o: &Order| Charge { cents: o.cents },
            |_, charge| Refund { charge },
        )
        .last_step("ship", |o: &Order| Ship { qty: o.qty })
        .compensation_retries(3, Duration::from_millis(100))
}

fn world_app(world: &std::sync::Arc<World>) -> Catga {
    Catga::builder().state_arc(world.clone()).build().unwrap()
}

const ORDER: Order = Order { qty: 2, cents: 900 };

#[tokio::test(start_paused = true)]
async fn every_step_runs_in_order_under_the_saga_id() {
    let world = std::sync::Arc::new(World::default());
    let app = world_app(&world);
    let saga = checkout().build().unwrap();
    let mut state = saga.start();
    saga.run(&app, &ORDER, &mut state).await.unwrap();
    assert_eq!(state.status, SagaStatus::Completed);
    assert_eq!(world.log(), ["reserve 2", "charge 900", "ship 2"]);
    let outputs: Vec<(usize, &str, &[u8])> = state
        .completed
        .iter()
        .map(|c| (c.index, c.step.as_str(), c.output.as_slice()))
        .collect();
    assert_eq!(
        outputs,
        [
            (0, "reserve", &b"7"[..]),
            (1, "charge", &b"\"ch_1\""[..]),
            (2, "ship", &b"null"[..])
        ]
    );
    for (_, correlation, step) in world.correlations.lock().unwrap().iter() {
        assert_eq!(*correlation, state.id);
        assert!(step.is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_compensates_the_completed_ones_in_reverse() {
    let world = std::sync::Arc::new(World::default());
    world.ship_fails.store(true, Ordering::SeqCst);
    let app = world_app(&world);
    let saga = checkout().build().unwrap();
    let mut state = saga.start();
    let err = saga.run(&app, &ORDER, &mut state).await.unwrap_err();
    assert_eq!(
        world.log(),
        [
            "reserve 2",
            "charge 900",
            "ship 2",
            "refund ch_1",
            "release 7"
        ],
        "each compensation is built from its step's reply"
    );
    assert_eq!(state.status, SagaStatus::Compensated);
    assert!(state.completed.is_empty());
    let SagaError::Compensated {
        failure, source, ..
    } = &err
    else {
        panic!("unexpected {err}");
    };
    assert_eq!(failure.step, "ship");
    assert!(source.as_ref().unwrap().downcast_ref::<Refused>().is_some());
    assert!(err.to_string().contains("no courier"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_retried_with_backoff() {
    let world = std::sync::Arc::new(World::default());
    world.charge_fails.store(true, Ordering::SeqCst);
    world.release_failures.store(2, Ordering::SeqCst);
    let app = world_app(&world);
    let saga = checkout().build().unwrap();
    let mut state = saga.start();
    let started = Instant::now();
    saga.run(&app, &ORDER, &mut state).await.unwrap_err();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(
        world.log(),
        [
            "reserve 2",
            "charge 900",
            "release 7",
            "release 7",
            "release 7"
        ]
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100 + 200));
}

#[tokio::test(start_paused = true)]
async fn a_compensation_that_keeps_failing_is_dead_lettered_in_the_given_store_and_the_rest_still_run()
 {
    let world = std::sync::Arc::new(World::default());
    world.ship_fails.store(true, Ordering::SeqCst);
    world.refund_broken.store(true, Ordering::SeqCst);
    let app = world_app(&world);
    let letters = MemoryDeadLetterStore::new();
    let saga = checkout().dead_letters(letters.clone()).build().unwrap();
    let mut state = saga.start();
    let err = saga.run(&app, &ORDER, &mut state).await.unwrap_err();
    assert!(
        matches!(err, SagaError::CompensationFailed { failed: 1, .. }),
        "{err}"
    );
    assert_eq!(state.status, SagaStatus::Failed);
    let log = world.log();
    assert_eq!(
        log.iter().filter(|l| *l == "refund ch_1").count(),
        3,
        "tried 3 times"
    );
    assert_eq!(
        log.last().map(String::as_str),
        Some("release 7"),
        "earlier steps still undone"
    );
    let stored = letters.list(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message, "Refund");
    assert_eq!(stored[0].attempts, 3);
    assert_eq!(stored[0].correlation_id, state.id);
    assert_eq!(
        stored[0].payload.as_deref(),
        Some(&br#"{"charge":"ch_1"}"#[..])
    );
    assert_eq!(
        state.compensation_failures[0].dead_letter,
        Some(stored[0].id)
    );

    // Once the bank is back, the dead letter replays the refund.
    world.refund_broken.store(false, Ordering::SeqCst);
    app.replay_dead_letter(&letters, stored[0].id)
        .await
        .unwrap();
    assert_eq!(world.log().last().map(String::as_str), Some("refund ch_1"));
}

#[tokio::test(start_paused = true)]
async fn a_stored_state_resumes_where_it_stopped() {
    let world = std::sync::Arc::new(World::default());
    let app = world_app(&world);
    let saga = checkout().build().unwrap();
    // Run, keeping every state as a store would, and "crash" after the first step.
    let mut snapshots = Vec::new();
    let mut state = saga.start();
    saga.run_observed(&app, &ORDER, &mut state, |s| {
        snapshots.push(serde_json::to_string(s).unwrap());
    })
    .await
    .unwrap();
    let after_first: SagaState = serde_json::from_str(&snapshots[0]).unwrap();
    assert_eq!(after_first.next_step, 1);

    let resumed_world = std::sync::Arc::new(World::default());
    let resumed_app = world_app(&resumed_world);
    let mut resumed = after_first;
    saga.run(&resumed_app, &ORDER, &mut resumed).await.unwrap();
    assert_eq!(resumed.status, SagaStatus::Completed);
    assert_eq!(
        resumed_world.log(),
        ["charge 900", "ship 2"],
        "the first step is not run again"
    );
    assert_eq!(resumed.completed.len(), 3);

    // A finished saga does nothing more.
    saga.run(&resumed_app, &ORDER, &mut resumed).await.unwrap();
    assert_eq!(resumed_world.log().len(), 2);
}

#[tokio::test]
async fn a_state_of_another_saga_is_refused() {
    let world = std::sync::Arc::new(World::default());
    let app = world_app(&world);
    let mut state = SagaState::new("refund");
    let err = checkout()
        .build()
        .unwrap()
        .run(&app, &ORDER, &mut state)
        .await
        .unwrap_err();
    assert!(matches!(err, SagaError::WrongState { .. }), "{err}");
    assert!(world.log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_compensation_given_up_on_is_kept_once_in_the_applications_store_whatever_the_layers() {
    let world = std::sync::Arc::new(World::default());
    world.ship_fails.store(true, Ordering::SeqCst);
    world.refund_broken.store(true, Ordering::SeqCst);
    let app_letters = MemoryDeadLetterStore::new();
    let layer_letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state_arc(world.clone())
        .dead_letters(app_letters.clone())
        .layer(DeadLetter::new(layer_letters.clone()))
        .layer(Retry::exponential(2).without_jitter())
        .build()
        .unwrap();
    let saga = checkout().build().unwrap();
    let mut state = saga.start();
    saga.run(&app, &ORDER, &mut state).await.unwrap_err();
    assert_eq!(state.status, SagaStatus::Failed);

    // The failed step is compensated, not dead-lettered; the refund that failed on each of
    // its three tries is kept once, by the saga.
    assert_eq!(
        world.log().iter().filter(|l| *l == "refund ch_1").count(),
        3
    );
    assert_eq!(layer_letters.count().await.unwrap(), 0);
    let kept = app_letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].message, "Refund");
    assert_eq!(kept[0].message_id, state.compensation_message_id(1));
    assert_eq!(
        kept[0].headers,
        [
            ("catga-saga".to_string(), "checkout".to_string()),
            ("catga-saga-step".to_string(), "charge".to_string())
        ]
    );
    assert_eq!(state.compensation_failures[0].index, Some(1));
    assert_eq!(state.compensation_failures[0].dead_letter, Some(kept[0].id));

    // A replay that fails again leaves the letter where it was (same id, one more attempt),
    // and no layer keeps it a second time.
    let err = app
        .replay_dead_letter(app.dead_letters(), kept[0].id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    assert_eq!(layer_letters.count().await.unwrap(), 0);
    let still = app_letters.list(10).await.unwrap();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].id, kept[0].id);
    assert_eq!(still[0].attempts, kept[0].attempts + 1);

    // Once the bank is back, the letter replays the refund.
    world.refund_broken.store(false, Ordering::SeqCst);
    app.replay_dead_letter(app.dead_letters(), kept[0].id)
        .await
        .unwrap();
    assert_eq!(app_letters.count().await.unwrap(), 0);
    assert_eq!(world.log().last().map(String::as_str), Some("refund ch_1"));
}

/// Never answers.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stall;

#[handler]
async fn stall(_cmd: Stall) -> Result<(), Refused> {
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn the_step_timeout_bounds_every_command_the_saga_sends() {
    let world = std::sync::Arc::new(World::default());
    let app = world_app(&world);
    let saga = Saga::builder("stalled")
        .step(
            "reserve",
            |o: &Order| Reserve { qty: o.qty },
            |_, id| Release { reservation: id },
        )
        .last_step("stall", |_: &Order| Stall)
        .step_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut state = saga.start();
    let started = Instant::now();
    let err = saga.run(&app, &ORDER, &mut state).await.unwrap_err();
    let SagaError::Compensated { failure, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(failure.code, "timeout");
    assert_eq!(failure.index, Some(1));
    assert_eq!(world.log(), ["reserve 2", "release 7"]);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}
