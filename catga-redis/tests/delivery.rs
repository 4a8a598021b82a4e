//! The delivery budget and the dead letters: one poison event leaves exactly one dead letter
//! and stops; an event that succeeds on a redelivery leaves none; the handler runs at most
//! `max_deliveries` times (a `Retry` layer does not multiply it); nothing is acknowledged
//! before it was handled or kept; a deadline does not make an event expire.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::BoxError;
use catga_core::behavior::{DeadLetter, Retry};
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, MemoryDeadLetterStore};
use catga_redis::RedisTransport;
use common::{Server, eventually, pending, xlen};
use uuid::Uuid;

/// How a job's handler behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Succeed,
    /// Fails with a retryable error on every delivery.
    AlwaysRetryable,
    /// Fails with an error that is not retryable.
    Fatal,
    /// Fails (retryably) on its first delivery only.
    FailOnce,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the database is busy")]
    Busy,
    #[error("the job is malformed")]
    Malformed,
}

impl Retryable for JobError {
    fn is_retryable(&self) -> bool {
        matches!(self, JobError::Busy)
    }
}

/// How often each job's handler ran.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<u64, u32>>);

impl Runs {
    fn of(&self, id: u64) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

pub mod jobs {
    use super::*;

    #[handler]
    impl Runs {
        async fn job(&self, job: &Job) -> Result<(), JobError> {
            let run = {
                let mut runs = self.0.lock().map_err(|_| JobError::Busy)?;
                let run = runs.entry(job.id).or_default();
                *run += 1;
                *run
            };
            match job.mode {
                Mode::Succeed => Ok(()),
                Mode::AlwaysRetryable => Err(JobError::Busy),
                Mode::Fatal => Err(JobError::Malformed),
                Mode::FailOnce if run == 1 => Err(JobError::Busy),
                Mode::FailOnce => Ok(()),
            }
        }
    }
}

const MAX_DELIVERIES: u32 = 3;

async fn transport(server: &Server) -> RedisTransport {
    server
        .builder()
        .max_deliveries(MAX_DELIVERIES)
        .await
        .unwrap()
}

fn publisher(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("publisher")
        .handlers(|_| false)
        .build()
        .unwrap()
}

/// Publishes one job of each mode (ids 1 to 4) and waits until every one is settled.
async fn run_each_mode<L: catga_core::Layer>(
    server: &Server,
    redis: &RedisTransport,
    consumer: &Catga<L>,
    runs: &Runs,
) {
    let serving = consumer.serve().await.unwrap();
    let publisher = publisher(redis);
    for (id, mode) in [
        (1, Mode::Succeed),
        (2, Mode::AlwaysRetryable),
        (3, Mode::Fatal),
        (4, Mode::FailOnce),
    ] {
        publisher.publish(Job { id, mode }).await.unwrap();
    }
    let stream = redis.event_stream("Job");
    let raw = server.raw().await;
    eventually("every job ran and was settled", || async {
        runs.of(1) == 1
            && runs.of(2) >= MAX_DELIVERIES
            && runs.of(3) == 1
            && runs.of(4) == 2
            && pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;
}

fn assert_one_letter_per_poison(kept: &[DeadLetterRecord]) {
    let mut letters: Vec<(String, u32)> =
        kept.iter().map(|r| (r.code.clone(), r.attempts)).collect();
    letters.sort();
    assert_eq!(
        letters,
        [
            ("handler".to_string(), 1),
            ("handler".to_string(), MAX_DELIVERIES)
        ],
        "one letter for the fatal job, kept at once, one for the always-busy job, kept on its \
         last delivery, none for the jobs that succeeded: {kept:?}"
    );
}

#[tokio::test]
async fn one_poison_event_leaves_exactly_one_dead_letter_and_retry_does_not_multiply_runs() {
    let Some(server) = Server::get("one-letter").await else {
        return;
    };
    let redis = transport(&server).await;
    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .layer(DeadLetter::new(letters.clone()))
        .layer(Retry::exponential(2).base_delay(Duration::from_millis(1)))
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .build()
        .unwrap();
    run_each_mode(&server, &redis, &consumer, &runs).await;

    assert_eq!(
        [runs.of(1), runs.of(2), runs.of(3), runs.of(4)],
        [1, MAX_DELIVERIES, 1, 2],
        "the handler runs at most max_deliveries times in all: Retry(2) does not double it"
    );
    assert_one_letter_per_poison(&letters.list(10).await.unwrap());
    assert_eq!(
        consumer.dead_letters().count_dyn().await.unwrap(),
        0,
        "the layer kept them; the application's store does not keep them twice"
    );
    let mut raw = server.raw().await;
    assert_eq!(
        xlen(&mut raw, &redis.event_stream("Job")).await,
        4,
        "nothing is deleted from an event stream"
    );
}

#[tokio::test]
async fn without_a_dead_letter_layer_the_applications_store_keeps_the_failure() {
    let Some(server) = Server::get("app-letters").await else {
        return;
    };
    let redis = transport(&server).await;
    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    run_each_mode(&server, &redis, &consumer, &runs).await;

    assert_eq!(
        [runs.of(1), runs.of(2), runs.of(3), runs.of(4)],
        [1, MAX_DELIVERIES, 1, 2]
    );
    assert_one_letter_per_poison(&letters.list(10).await.unwrap());
}

/// A store that fails its first `failures` writes.
#[derive(Clone)]
pub struct Flaky {
    inner: MemoryDeadLetterStore,
    failures: Arc<AtomicU32>,
}

impl DeadLetterStore for Flaky {
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err("the dead-letter database is down".into());
        }
        self.inner.put(record).await
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        self.inner.list(limit).await
    }

    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        self.inner.take(id).await
    }

    async fn count(&self) -> Result<usize, BoxError> {
        self.inner.count().await
    }
}

#[tokio::test]
async fn a_failure_that_cannot_be_kept_stays_pending_until_it_can() {
    let Some(server) = Server::get("unkept").await else {
        return;
    };
    let redis = transport(&server).await;
    let store = Flaky {
        inner: MemoryDeadLetterStore::new(),
        failures: Arc::new(AtomicU32::new(2)),
    };
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(store.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    publisher(&redis)
        .publish(Job {
            id: 9,
            mode: Mode::Fatal,
        })
        .await
        .unwrap();
    let stream = redis.event_stream("Job");
    let raw = server.raw().await;
    eventually("it is kept once the store works again", || async {
        store.count().await.unwrap() == 1 && pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;

    assert_eq!(
        runs.of(9),
        3,
        "not acknowledged while it could not be kept: delivered again until it was"
    );
    assert_eq!(store.failures.load(Ordering::SeqCst), 0);
    let kept = store.list(10).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].code, "handler");
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub order: u64,
}

#[derive(Default)]
pub struct Shipping {
    done: AtomicU64,
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Shipping {
        async fn shipped(&self, _event: &Shipped) -> Result<(), JobError> {
            tokio::time::sleep(Duration::from_millis(5)).await; // a database write
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// `rel_r4_deadline_event`: events published under a 1 s deadline (as `ctx.publish` inside a
/// request whose caller set a timeout would) while their consumer is down for 2 s.
#[tokio::test]
async fn events_published_with_a_deadline_are_all_handled_after_the_consumer_comes_back() {
    let Some(server) = Server::get("deadline-event").await else {
        return;
    };
    let redis = transport(&server).await;
    let letters = MemoryDeadLetterStore::new();
    let state = Arc::new(Shipping::default());
    let shipping = Catga::builder()
        .layer(DeadLetter::new(letters.clone()))
        .state_arc(state.clone())
        .transport(redis.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("delivery::shipping::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    // The group exists; then the service is down (a deploy).
    shipping.serve().await.unwrap().shutdown().await;
    let orders = publisher(&redis);
    for order in 0..20 {
        let ctx = Context::new().with_timeout(Duration::from_secs(1));
        orders.publish_with(Shipped { order }, ctx).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let serving = shipping.serve().await.unwrap();
    let stream = redis.event_stream("Shipped");
    let raw = server.raw().await;
    eventually("all 20 are handled and acknowledged", || async {
        state.done.load(Ordering::SeqCst) >= 20
            && pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(state.done.load(Ordering::SeqCst), 20, "handled 20/20");
    assert_eq!(letters.count().await.unwrap(), 0, "kept 0");
}

/// Reads every new entry of `stream` as consumer `name` of `group`, as an instance that then
/// dies would, and returns their ids.
async fn read_and_die(
    raw: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    name: &str,
) -> Vec<String> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(name)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(raw)
        .await
        .unwrap();
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| e.id)
        .collect()
}

async fn create_group(raw: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_entry_that_kept_killing_its_consumers_is_set_aside_without_running() {
    let Some(server) = Server::get("exhausted").await else {
        return;
    };
    let redis = server
        .builder()
        .max_deliveries(MAX_DELIVERIES)
        .ack_wait(Duration::from_millis(200))
        .await
        .unwrap();
    let stream = redis.event_stream("Job");
    let mut raw = server.raw().await;
    create_group(&mut raw, &stream, "jobs").await;
    publisher(&redis)
        .publish(Job {
            id: 5,
            mode: Mode::Succeed,
        })
        .await
        .unwrap();
    // Delivered max_deliveries times, each to an instance that died handling it.
    let ids = read_and_die(&mut raw, &stream, "jobs", "ghost").await;
    assert_eq!(ids.len(), 1);
    redis::cmd("XCLAIM")
        .arg(&stream)
        .arg("jobs")
        .arg("ghost")
        .arg(0)
        .arg(&ids[0])
        .arg("RETRYCOUNT")
        .arg(MAX_DELIVERIES)
        .query_async::<redis::Value>(&mut raw)
        .await
        .unwrap();

    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    eventually("it is claimed, kept and acknowledged", || async {
        letters.count().await.unwrap() == 1 && pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(
        runs.of(5),
        0,
        "a message that kills its consumer is not run again"
    );
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept[0].code, "exhausted", "{kept:?}");
    assert_eq!(kept[0].attempts, MAX_DELIVERIES + 1);
    assert_eq!(xlen(&mut raw, &stream).await, 1, "kept on the stream too");
}

#[tokio::test]
async fn a_pending_entry_trimmed_before_it_was_handled_is_forgotten_not_kept() {
    let Some(server) = Server::get("trimmed").await else {
        return;
    };
    // The instance restarts under its name and re-reads its own pending entries, which the
    // server returns without fields once trimmed.
    let redis = server.builder().instance("ghost").await.unwrap();
    let stream = redis.event_stream("Job");
    let mut raw = server.raw().await;
    create_group(&mut raw, &stream, "jobs").await;
    publisher(&redis)
        .publish(Job {
            id: 6,
            mode: Mode::Succeed,
        })
        .await
        .unwrap();
    let ids = read_and_die(&mut raw, &stream, "jobs", "ghost").await;
    // Trimming takes it while it is pending (as `MAXLEN ~` does to a consumer too far behind).
    redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MAXLEN")
        .arg(0)
        .query_async::<u64>(&mut raw)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);

    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    eventually("the pending list forgets it", || async {
        pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(runs.of(6), 0);
    assert_eq!(
        letters.count().await.unwrap(),
        0,
        "nothing is left to keep: the loss is logged (documented: trimming does not wait)"
    );
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub n: u64,
}

#[derive(Default)]
pub struct SlowRuns(Mutex<HashMap<u64, u32>>);

pub mod slow {
    use super::*;

    #[handler]
    impl SlowRuns {
        async fn slow(&self, event: &Slow) -> Result<(), JobError> {
            *self
                .0
                .lock()
                .map_err(|_| JobError::Busy)?
                .entry(event.n)
                .or_default() += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(())
        }
    }
}

/// Entries wait for a free slot far longer than the claim idle time: none may be taken over
/// (by this instance's own claimer or another's) and run a second time meanwhile.
#[tokio::test]
async fn entries_waiting_for_a_slot_are_not_claimed_away_and_run_twice() {
    let Some(server) = Server::get("slots").await else {
        return;
    };
    let redis = server
        .builder()
        .ack_wait(Duration::from_millis(200))
        .await
        .unwrap();
    let runs = Arc::new(SlowRuns::default());
    let app = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("slow")
        .serve_max_in_flight(1)
        .handlers(|h| h.name.starts_with("delivery::slow::"))
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    let publisher = publisher(&redis);
    for n in 0..8 {
        publisher.publish(Slow { n }).await.unwrap();
    }
    let stream = redis.event_stream("Slow");
    let raw = server.raw().await;
    eventually("all eight are handled and acknowledged", || async {
        runs.0.lock().unwrap().len() == 8 && pending(&mut raw.clone(), &stream, "slow").await == 0
    })
    .await;
    serving.shutdown().await;
    let runs = runs.0.lock().unwrap().clone();
    assert!(
        runs.values().all(|&r| r == 1),
        "each ran once, though the last waited 1 s behind a 200 ms claim idle time: {runs:?}"
    );
}
