//! What the recovery tests share: the saga and its messages, the world its handlers change,
//! the stores and behaviours through which a process "dies", and a process of the scenario.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::saga::{Recovery, Resumed, Saga, SagaState, SagaStatus};
use catga_core::store::idempotency::{Claim, IdempotencyStore, MemoryIdempotencyStore, ReplyKey};
use catga_core::store::saga::{MemorySagaStore, SagaRecord, SagaStore, SagaStoreError, StoredSaga};
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
    pub qty: u32,
    pub cents: u64,
}

pub const ORDER: Order = Order { qty: 2, cents: 900 };

/// The definition every "process" builds for itself.
pub fn checkout() -> Saga<Order> {
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
        .unwrap()
}

/// The outside world the handlers change (it outlives every process): the effects, a step
/// that fails, and a step at which the process "dies".
#[derive(Default)]
pub struct World {
    effects: Mutex<Vec<String>>,
    pub ship_fails: AtomicBool,
    /// Handlers that stop, once, before their effect, until the test aborts the process.
    pub hang_at: Mutex<HashSet<&'static str>>,
    pub hung: Notify,
}

impl World {
    fn effect(&self, what: String) {
        self.effects.lock().unwrap().push(what);
    }

    pub fn effects(&self) -> Vec<String> {
        self.effects.lock().unwrap().clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
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
        self.maybe_hang("reserve").await;
        self.effect(format!("reserve {}", cmd.qty));
        Ok(42)
    }

    async fn release(&self, cmd: Release) -> Result<(), Refused> {
        self.effect(format!("release {}", cmd.reservation));
        Ok(())
    }

    async fn charge(&self, cmd: Charge) -> Result<u64, Refused> {
        self.maybe_hang("charge").await;
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

/// Idempotency records every process shares, as they would in a database.
#[derive(Clone, Default)]
pub struct SharedRecords(Arc<MemoryIdempotencyStore>);

impl IdempotencyStore for SharedRecords {
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

/// Every command sent, with its message id, before idempotency decides whether it runs.
#[derive(Clone, Default)]
pub struct Sends(pub Arc<Mutex<Vec<(&'static str, Uuid)>>>);

impl Sends {
    pub fn of(&self, name: &str) -> Vec<Uuid> {
        let sends = self.0.lock().unwrap();
        sends
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, id)| *id)
            .collect()
    }
}

impl Behavior for Sends {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        self.0
            .lock()
            .unwrap()
            .push((msg.info().name(), ctx.message_id()));
        next.run(msg).await
    }
}

/// A process: its own application over the shared world and idempotency records.
pub fn process(world: &Arc<World>, records: &SharedRecords, sends: &Sends) -> Catga<impl Layer> {
    Catga::builder()
        .state_arc(world.clone())
        .layer(sends.clone())
        .layer(Idempotency::new(records.clone()))
        .build()
        .unwrap()
}

/// A store through which the process "dies" at its `crash_at`-th save, before writing it:
/// the save never returns (until `resume` is notified, for a process that was only slow).
#[derive(Clone)]
pub struct Faulty {
    inner: MemorySagaStore,
    saves: Arc<AtomicU64>,
    crash_at: u64,
    pub reached: Arc<Notify>,
    pub resume: Arc<Notify>,
    /// Every record saved: (status, next step, completed steps).
    pub saved: Arc<Mutex<Vec<(SagaStatus, usize, usize)>>>,
}

impl Faulty {
    pub fn new(inner: &MemorySagaStore, crash_at: u64) -> Self {
        Faulty {
            inner: inner.clone(),
            saves: Arc::default(),
            crash_at,
            reached: Arc::default(),
            resume: Arc::default(),
            saved: Arc::default(),
        }
    }
}

impl SagaStore for Faulty {
    async fn save(&self, record: &SagaRecord, expected: u64) -> Result<u64, SagaStoreError> {
        if self.saves.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            self.reached.notify_one();
            self.resume.notified().await;
        }
        let version = self.inner.save(record, expected).await?;
        let state = record.decode_state().unwrap();
        self.saved
            .lock()
            .unwrap()
            .push((state.status, state.next_step, state.completed.len()));
        Ok(version)
    }
    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        self.inner.load(id).await
    }
    async fn unfinished(
        &self,
        saga: &str,
        before: Option<std::time::SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        self.inner.unfinished(saga, before, limit).await
    }
    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        self.inner.delete(id).await
    }
}

/// The shared pieces of one scenario.
#[derive(Default)]
pub struct Setup {
    pub world: Arc<World>,
    pub records: SharedRecords,
    pub sends: Sends,
    pub store: MemorySagaStore,
}

impl Setup {
    /// Starts a run in a process of its own through `store`, waits until it "dies" (a save
    /// or a handler that never returns) and aborts it, as a crash would.
    pub async fn crash(&self, store: Faulty) -> SagaState {
        let state = checkout().start();
        let app = process(&self.world, &self.records, &self.sends);
        let reached = store.reached.clone();
        let mut running = state.clone();
        let task = tokio::spawn(async move {
            checkout()
                .run_stored(&app, &store, &ORDER, &mut running)
                .await
        });
        let crashed = async {
            tokio::select! {
                () = reached.notified() => {}
                () = self.world.hung.notified() => {}
            }
        };
        tokio::time::timeout(Duration::from_secs(10), crashed)
            .await
            .expect("the run reached its crash point");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled(), "the run was killed");
        state
    }

    /// A new process: its own application and definition over the same store and records,
    /// resuming every unfinished instance however recently it was saved.
    pub async fn recover(&self) -> Vec<Resumed> {
        self.recover_after(Duration::ZERO).await
    }

    /// [`recover`](Self::recover) for the instances nobody saved for `grace`.
    pub async fn recover_after(&self, grace: Duration) -> Vec<Resumed> {
        let app = process(&self.world, &self.records, &self.sends);
        checkout()
            .recover(&app, &self.store, Recovery::after(grace))
            .await
            .unwrap()
    }
}
