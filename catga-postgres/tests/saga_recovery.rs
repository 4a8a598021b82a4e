//! A saga persisted in Postgres (`Saga::run_stored` over `PostgresSagaStore`) survives its
//! process: the process is killed (its task aborted) at a chosen point, and a new process (its
//! own pool, stores, application and saga definition on the same schema) recovers the
//! instance with `Saga::recover`. Its steps are handled behind `Idempotency` on the Postgres
//! idempotency store, which every process shares, so the one step a resumed run sends again
//! takes effect once. The same scenarios in memory, with more cases, are in
//! `catga-core/tests/saga_recovery/`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use catga_core::prelude::*;
use catga_core::saga::{
    Recovery, Resumed, Saga, SagaError, SagaState, SagaStatus, StoredSagaError,
};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use catga_postgres::{PostgresIdempotencyStore, PostgresSagaStore, Schema};
use common::Db;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

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

    fn count(&self, prefix: &str) -> usize {
        self.effects()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
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

/// A new pool on the test database, as another process would open.
async fn pool() -> PgPool {
    PgPool::connect(&common::url())
        .await
        .expect("a pool on the test database")
}

/// A dead process's claim on a command it was handling blocks that command for this long.
const LEASE: Duration = Duration::from_secs(2);

/// An application whose commands are deduplicated in the schema's idempotency table.
fn app(world: &Arc<World>, pool: &PgPool, schema: &Schema) -> Catga<impl Layer + use<>> {
    Catga::builder()
        .state_arc(world.clone())
        .layer(Idempotency::new(PostgresIdempotencyStore::new(pool.clone(), schema)).lease(LEASE))
        .build()
        .expect("build the application")
}

/// A saga store through which the process "dies" at its `crash_at`-th save, before writing
/// it: the save never returns.
#[derive(Clone)]
struct Faulty {
    inner: PostgresSagaStore,
    saves: Arc<AtomicU64>,
    crash_at: u64,
    reached: Arc<Notify>,
}

impl Faulty {
    fn new(inner: PostgresSagaStore, crash_at: u64) -> Self {
        Faulty {
            inner,
            saves: Arc::default(),
            crash_at,
            reached: Arc::default(),
        }
    }
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

/// Starts a run in a first process, waits until it "dies" (at its `crash_at`-th save, or in
/// a handler that never returns) and aborts it, as a crash would; returns its state as it
/// began (its id).
async fn crash(db: &Db, world: &Arc<World>, crash_at: u64) -> SagaState {
    let pool = pool().await;
    let store = Faulty::new(PostgresSagaStore::new(pool.clone(), &db.schema), crash_at);
    let app = app(world, &pool, &db.schema);
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
    // Its connections go, as a dead process's do. (A dispatch killed in its handler may have
    // released its idempotency claim on the way out, which a real crash would not; if it did
    // not, the step sent again waits out the claim's `LEASE`.)
    pool.close().await;
    state
}

/// A new process recovering the schema's checkouts nobody saved for `grace`.
async fn recover(db: &Db, world: &Arc<World>, grace: Duration) -> Vec<Resumed> {
    let pool = pool().await;
    let store = PostgresSagaStore::new(pool.clone(), &db.schema);
    let app = app(world, &pool, &db.schema);
    checkout()
        .recover(&app, &store, Recovery::after(grace))
        .await
        .expect("list the unfinished checkouts")
}

async fn stored(db: &Db, id: Uuid) -> StoredSaga {
    PostgresSagaStore::new(db.pool.clone(), &db.schema)
        .load(id)
        .await
        .expect("load the instance")
        .expect("the instance is stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_after_a_step_completes_in_a_new_process_with_each_effect_once() {
    let Some(db) = Db::open("saga_recovery_completes").await else {
        return;
    };
    let world = Arc::new(World::default());
    // Saves: 1 the start, 2 after the reservation, 3 after the charge: the process dies
    // there, after the charge took effect and before its completion was saved.
    let state = crash(&db, &world, 3).await;
    assert_eq!(world.effects(), ["reserve 2", "charge 900"]);
    let before = stored(&db, state.id).await;
    assert_eq!(
        (before.version, before.record.status),
        (2, SagaStatus::Running)
    );

    let resumed = recover(&db, &world, Duration::ZERO).await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].id, state.id);
    assert!(resumed[0].outcome.is_ok(), "{:?}", resumed[0].outcome);
    assert_eq!(
        world.effects(),
        ["reserve 2", "charge 900", "ship 2"],
        "each step took effect once: the charge sent again was answered from the idempotency table"
    );
    let finished = resumed[0].state.as_ref().expect("a decoded state");
    assert_eq!(
        finished.completed[1].output, b"7",
        "the first charge's reply"
    );
    let after = stored(&db, state.id).await;
    assert_eq!(after.record.status, SagaStatus::Completed);
    // The claim, the charge, the shipping and the completion.
    assert_eq!(after.version, 6);
    let store = PostgresSagaStore::new(db.pool.clone(), &db.schema);
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
    let Some(db) = Db::open("saga_recovery_compensates").await else {
        return;
    };
    let world = Arc::new(World::default());
    world.hang_at.lock().unwrap().insert("ship");
    // The process dies while shipping, before any effect of the shipping.
    let state = crash(&db, &world, u64::MAX).await;
    assert_eq!(world.effects(), ["reserve 2", "charge 900"]);
    // After the restart, the courier is gone.
    world.ship_fails.store(true, Ordering::SeqCst);

    let resumed = recover(&db, &world, Duration::ZERO).await;
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
    assert_eq!(
        stored(&db, state.id).await.record.status,
        SagaStatus::Compensated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_while_compensating_finishes_compensating_in_a_new_process() {
    let Some(db) = Db::open("saga_recovery_compensating").await else {
        return;
    };
    let world = Arc::new(World::default());
    world.ship_fails.store(true, Ordering::SeqCst);
    // Saves: 1 start, 2 reserved, 3 charged, 4 the shipping failed, 5 refunded: the process
    // dies there, after the refund and before its save.
    let state = crash(&db, &world, 5).await;
    assert_eq!(
        world.effects(),
        ["reserve 2", "charge 900", "ship failed", "refund 7"]
    );
    assert_eq!(
        stored(&db, state.id).await.record.status,
        SagaStatus::Compensating
    );

    let resumed = recover(&db, &world, Duration::ZERO).await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].status(), Some(SagaStatus::Compensated));
    assert_eq!(
        world.effects(),
        [
            "reserve 2",
            "charge 900",
            "ship failed",
            "refund 7",
            "release 42"
        ],
        "no forward step again, each compensation once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_resuming_one_instance_from_one_read_exactly_one_goes_on() {
    let Some(db) = Db::open("saga_recovery_one_read").await else {
        return;
    };
    let world = Arc::new(World::default());
    let state = crash(&db, &world, 3).await;
    // Both processes listed the instance at the same version.
    let listed = stored(&db, state.id).await;
    let resume = |instance: StoredSaga| {
        let (world, schema) = (world.clone(), db.schema.clone());
        tokio::spawn(async move {
            let pool = pool().await;
            let store = PostgresSagaStore::new(pool.clone(), &schema);
            let app = app(&world, &pool, &schema);
            checkout().resume_stored(&app, &store, instance).await
        })
    };
    let (a, b) = (resume(listed.clone()), resume(listed));
    let outcomes = [a.await.unwrap(), b.await.unwrap()];
    let went_on = outcomes.iter().filter(|r| r.outcome.is_ok()).count();
    let superseded = outcomes
        .iter()
        .filter(|r| {
            r.outcome
                .as_ref()
                .is_err_and(StoredSagaError::is_superseded)
        })
        .count();
    assert_eq!((went_on, superseded), (1, 1), "{outcomes:?}");
    let loser = outcomes
        .iter()
        .find(|r| r.outcome.is_err())
        .and_then(|r| r.state.as_ref())
        .expect("the loser's state");
    assert_eq!(
        loser.next_step, 1,
        "the loser stopped where it read the instance"
    );
    assert_eq!(world.effects(), ["reserve 2", "charge 900", "ship 2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_recoveries_do_not_both_proceed() {
    let Some(db) = Db::open("saga_recovery_concurrent").await else {
        return;
    };
    let db = Arc::new(db);
    let world = Arc::new(World::default());
    let state = crash(&db, &world, 3).await;
    // With a grace of zero, an instance the winner saved a moment ago would look abandoned
    // too (a live run taken over, which is safe but not this case). With one, the other
    // process either lists the instance before the winner's claim and loses the claim, or
    // after it and leaves it alone.
    let grace = Duration::from_millis(300);
    tokio::time::sleep(grace * 2).await;
    let run = || {
        let (db, world) = (db.clone(), world.clone());
        tokio::spawn(async move { recover(&db, &world, grace).await })
    };
    let (a, b) = (run(), run());
    let resumed: Vec<Resumed> = [a.await.unwrap(), b.await.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        resumed.iter().filter(|r| r.outcome.is_ok()).count(),
        1,
        "{resumed:?}"
    );
    // The other process found nothing left to do, or lost the claim.
    assert!(
        resumed.iter().all(|r| r.outcome.is_ok()
            || r.outcome
                .as_ref()
                .is_err_and(StoredSagaError::is_superseded)),
        "{resumed:?}"
    );
    assert_eq!((world.count("charge"), world.count("ship")), (1, 1));
    assert_eq!(
        stored(&db, state.id).await.record.status,
        SagaStatus::Completed
    );
}
