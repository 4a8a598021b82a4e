//! A saga run with `run_stored` on the Redis saga store, killed mid-run, and recovered by a
//! new process (its own connection and application) with `recover`: it completes, or
//! compensates, each step taking effect once. Mirrors `catga-postgres/tests/saga_recovery.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::saga::{
    Recovery, Resumed, Saga, SagaError, SagaState, SagaStatus, StoredSagaError,
};
use catga_core::store::idempotency::{Claim, IdempotencyStore, MemoryIdempotencyStore, ReplyKey};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use catga_redis::store::RedisSagaStore;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::Slice;

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

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub payment: u64,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub qty: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(&'static str);

/// The saga's input, stored with the instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    qty: u32,
    cents: u64,
}

const ORDER: Order = Order { qty: 2, cents: 900 };

/// The definition every process builds for itself.
fn checkout() -> Saga<Order> {
    Saga::builder("checkout")
        .step(
            "reserve",
            |o: &Order| Reserve { qty: o.qty },
            |_, reservation| Release { reservation },
        )
        .step(
            "charge",
            |o: &Order| Charge { cents: o.cents },
            |_, payment| Refund { payment },
        )
        .last_step("ship", |o: &Order| Ship { qty: o.qty })
        .compensation_retries(1, Duration::from_millis(1))
        .build()
        .expect("a sound saga")
}

/// The outside world the handlers change; it outlives every process.
#[derive(Default)]
pub struct World {
    effects: Mutex<Vec<String>>,
    ship_fails: AtomicBool,
    /// Handlers that stop, once, before their effect, until the test kills the process.
    hang_at: Mutex<HashSet<&'static str>>,
    hung: Notify,
}

impl World {
    fn effect(&self, what: String) {
        self.effects.lock().unwrap().push(what);
    }

    fn effects(&self) -> Vec<String> {
        self.effects.lock().unwrap().clone()
    }

    async fn maybe_hang(&self, step: &'static str) {
        if self.hang_at.lock().unwrap().remove(step) {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[handler(allow(unwrap_in_handler))]
impl World {
    async fn reserve(&self, cmd: Reserve) -> Result<u64, Refused> {
        self.effect(format!("reserve {}", cmd.qty));
        Ok(42)
    }

    async fn release(&self, cmd: Release) -> Result<(), Refused> {
        self.effect(format!("release {}", cmd.reservation));
        Ok(())
    }

    async fn charge(&self, cmd: Charge) -> Result<u64, Refused> {
        self.effect(format!("charge {}", cmd.cents));
        Ok(7)
    }

    async fn refund(&self, cmd: Refund) -> Result<(), Refused> {
        self.effect(format!("refund {}", cmd.payment));
        Ok(())
    }

    async fn ship(&self, cmd: Ship) -> Result<(), Refused> {
        self.maybe_hang("ship").await;
        if self.ship_fails.load(Ordering::SeqCst) {
            self.effect("ship failed".into());
            return Err(Refused("no courier"));
        }
        self.effect(format!("ship {}", cmd.qty));
        Ok(())
    }
}

/// The idempotency store every process shares (in production a shared one, Redis's or
/// Postgres's); here one in memory that outlives the processes.
#[derive(Clone, Default)]
struct Shared(Arc<MemoryIdempotencyStore>);

impl IdempotencyStore for Shared {
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        self.0.claim(key, lease).await
    }
    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        self.0.complete(key, reply, ttl).await
    }
    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        self.0.release(key).await
    }
    fn release_now(&self, key: &ReplyKey) -> bool {
        self.0.release_now(key)
    }
    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        self.0.wait(key, timeout).await
    }
}

fn app(world: &Arc<World>, handled: &Shared) -> Catga<impl Layer + use<>> {
    Catga::builder()
        .state_arc(world.clone())
        .layer(Idempotency::new(handled.clone()))
        .build()
        .expect("build the application")
}

/// A saga store through which the process "dies" at its `crash_at`-th save, before writing
/// it: the save never returns.
#[derive(Clone)]
struct Faulty {
    inner: RedisSagaStore,
    saves: Arc<AtomicU64>,
    crash_at: u64,
    reached: Arc<Notify>,
}

impl SagaStore for Faulty {
    async fn save(&self, record: &SagaRecord, expected: u64) -> Result<u64, SagaStoreError> {
        if self.saves.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.save(record, expected).await
    }
    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        self.inner.load(id).await
    }
    async fn unfinished(
        &self,
        saga: &str,
        before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        self.inner.unfinished(saga, before, limit).await
    }
    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        self.inner.delete(id).await
    }
}

/// Starts a run in a first process (its own connection and application), waits until it
/// "dies" (at its `crash_at`-th save, or in a handler that never returns) and aborts it;
/// returns its state as it began (its id).
async fn crash(slice: &Slice, world: &Arc<World>, handled: &Shared, crash_at: u64) -> SagaState {
    let store = Faulty {
        inner: slice.sagas().await,
        saves: Arc::default(),
        crash_at,
        reached: Arc::default(),
    };
    let app = app(world, handled);
    let reached = store.reached.clone();
    let state = checkout().start();
    let mut running = state.clone();
    let task = tokio::spawn(async move {
        checkout()
            .run_stored(&app, &store, &ORDER, &mut running)
            .await
    });
    let crashed = async {
        tokio::select! {
            () = reached.notified() => {}
            () = world.hung.notified() => {}
        }
    };
    tokio::time::timeout(Duration::from_secs(30), crashed)
        .await
        .expect("the run reached its crash point");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled(), "the run was killed");
    state
}

/// A new process recovering the checkouts nobody saved for `grace`.
async fn recover(slice: &Slice, world: &Arc<World>, handled: &Shared) -> Vec<Resumed> {
    let store = slice.sagas().await;
    checkout()
        .recover(
            &app(world, handled),
            &store,
            Recovery::after(Duration::ZERO),
        )
        .await
        .expect("list the unfinished checkouts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_after_a_step_completes_in_a_new_process_with_each_effect_once() {
    let Some(slice) = Slice::open("sagas_recovery_completes").await else {
        return;
    };
    let (world, handled) = (Arc::new(World::default()), Shared::default());
    // Saves: 1 the start, 2 after the reservation, 3 after the charge: the process dies
    // there, after the charge took effect and before its completion was saved.
    let state = crash(&slice, &world, &handled, 3).await;
    assert_eq!(world.effects(), ["reserve 2", "charge 900"]);
    let store = slice.sagas().await;
    let before = store.load(state.id).await.unwrap().expect("stored");
    assert_eq!(
        (before.version, before.record.status),
        (2, SagaStatus::Running)
    );

    let resumed = recover(&slice, &world, &handled).await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].id, state.id);
    assert!(resumed[0].outcome.is_ok(), "{:?}", resumed[0].outcome);
    assert_eq!(
        world.effects(),
        ["reserve 2", "charge 900", "ship 2"],
        "each step took effect once: the charge sent again was answered by idempotency"
    );
    let after = store.load(state.id).await.unwrap().expect("stored");
    assert_eq!(after.record.status, SagaStatus::Completed);
    // The claim, the charge, the shipping and the completion.
    assert_eq!(after.version, 6);
    assert!(
        store
            .unfinished("checkout", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_after_the_crash_makes_recovery_compensate_each_completed_step_once() {
    let Some(slice) = Slice::open("sagas_recovery_compensates").await else {
        return;
    };
    let (world, handled) = (Arc::new(World::default()), Shared::default());
    world.hang_at.lock().unwrap().insert("ship");
    // The process dies while shipping, before any effect of the shipping.
    let state = crash(&slice, &world, &handled, u64::MAX).await;
    assert_eq!(world.effects(), ["reserve 2", "charge 900"]);
    // After the restart, the courier is gone.
    world.ship_fails.store(true, Ordering::SeqCst);

    let resumed = recover(&slice, &world, &handled).await;
    assert_eq!(resumed.len(), 1);
    let Err(StoredSagaError::Saga { source, .. }) = &resumed[0].outcome else {
        panic!("expected a compensated saga, got {:?}", resumed[0].outcome);
    };
    assert!(
        matches!(source, SagaError::Compensated { failure, .. } if failure.index == Some(2)),
        "{source}"
    );
    assert_eq!(
        world.effects(),
        [
            "reserve 2",
            "charge 900",
            "ship failed",
            "refund 7",
            "release 42"
        ],
        "compensated last first, each once"
    );
    let store = slice.sagas().await;
    let stored = store.load(state.id).await.unwrap().expect("stored");
    assert_eq!(stored.record.status, SagaStatus::Compensated);
    assert!(
        store
            .unfinished("checkout", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
