//! The delivery budget is catga's (p14, p14b, rel_r3, rel_r5 on NATS): an event's handlers
//! run at most `max_deliveries` times (the `Retry` layer does not multiply that), one poison
//! event leaves exactly one dead letter and is terminated, an event that succeeds on a later
//! delivery leaves none, a delivery that never settled (its consumer crashed each time) is set
//! aside unrun once the budget is spent, and nothing is acknowledged while the dead-letter
//! store cannot keep it. The server's own `max_deliver` is off, also on a durable consumer
//! created with one by an earlier version.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use catga_core::behavior::{DeadLetter, Retry};
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, MemoryDeadLetterStore};
use catga_core::{BoxError, Retryable};
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE, eventually};
use futures::StreamExt;
use uuid::Uuid;

const MAX_DELIVER: u32 = 3;

/// Fails until its handler saw it `fail_times` times.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub fail_times: u32,
    pub retryable: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot process job ({0})")]
pub struct Bad(bool);

impl Retryable for Bad {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

/// Runs and successes by job.
#[derive(Default)]
pub struct Runs {
    runs: Mutex<HashMap<u64, u32>>,
    done: Mutex<Vec<u64>>,
}

impl Runs {
    fn of(&self, id: u64) -> u32 {
        self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

pub mod worker {
    use super::*;

    #[handler]
    impl Runs {
        async fn job(&self, job: &Job) -> Result<(), Bad> {
            let run = {
                let mut runs = self.runs.lock().map_err(|_| Bad(false))?;
                let n = runs.entry(job.id).or_insert(0);
                *n += 1;
                *n
            };
            if run <= job.fail_times {
                return Err(Bad(job.retryable));
            }
            self.done.lock().map_err(|_| Bad(false))?.push(job.id);
            Ok(())
        }
    }
}

async fn nats(corner: &Corner) -> NatsTransport {
    corner
        .transport()
        .max_deliveries(MAX_DELIVER)
        .await
        .unwrap()
}

/// A worker with a `DeadLetter` layer outside a `Retry` layer (the order the docs advise).
fn worker(
    nats: &NatsTransport,
    service: &str,
    letters: &MemoryDeadLetterStore,
) -> (Catga<impl catga_core::Layer>, Arc<Runs>) {
    let runs = Arc::new(Runs::default());
    let app = Catga::builder()
        .state_arc(runs.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("delivery::worker::"))
        .layer(DeadLetter::new(letters.clone()))
        .layer(Retry::exponential(2).base_delay(Duration::from_millis(1)))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, runs)
}

fn letters_for(kept: &[DeadLetterRecord], id: Uuid) -> usize {
    kept.iter().filter(|r| r.message_id == id).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_event_leaves_one_dead_letter_after_max_deliver_runs() {
    let Some(corner) = Corner::new("one_poison_event_leaves_one_dead_letter").await else {
        return;
    };
    let nats = nats(&corner).await;
    let letters = MemoryDeadLetterStore::new();
    let service = common::unique("worker");
    let (app, runs) = worker(&nats, &service, &letters);
    let serving = app.serve().await.unwrap();
    let (retryable, fatal) = (Uuid::now_v7(), Uuid::now_v7());
    let poison = |id, retryable| Job {
        id,
        fail_times: u32::MAX,
        retryable,
    };
    app.publish_with(poison(1, true), Context::new().with_message_id(retryable))
        .await
        .unwrap();
    app.publish_with(poison(2, false), Context::new().with_message_id(fatal))
        .await
        .unwrap();

    let kept = common::dead_letters(&letters, 2, "one letter for each poison event").await;
    common::settled(&nats, &service, "Job", "both terminated").await;
    // Longer than every backoff step: another delivery would have happened by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept_after = letters.list(10).await.unwrap();
    assert_eq!(kept_after.len(), 2, "{kept_after:?}");
    assert_eq!(letters_for(&kept, retryable), 1, "retryable: one letter");
    assert_eq!(letters_for(&kept, fatal), 1, "not retryable: one letter");
    assert_eq!(
        runs.of(1),
        MAX_DELIVER,
        "a retryable failure runs max_deliveries times: Retry does not multiply deliveries"
    );
    assert_eq!(runs.of(2), 1, "a failure that is not retryable runs once");
    let retried = kept.iter().find(|r| r.message_id == retryable).unwrap();
    assert_eq!(
        retried.attempts, MAX_DELIVER,
        "the letter says which delivery failed"
    );
    common::settled(&nats, &service, "Job", "still nothing pending").await;
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_succeeds_on_a_later_delivery_leaves_no_dead_letter() {
    let Some(corner) = Corner::new("succeeds_on_a_later_delivery").await else {
        return;
    };
    let nats = nats(&corner).await;
    let letters = MemoryDeadLetterStore::new();
    let service = common::unique("worker");
    let (app, runs) = worker(&nats, &service, &letters);
    let serving = app.serve().await.unwrap();
    // Fails on its first delivery (p14b: the second), then succeeds.
    for (id, fail_times) in [(1, 1), (2, 2)] {
        app.publish(Job {
            id,
            fail_times,
            retryable: true,
        })
        .await
        .unwrap();
    }
    eventually("both jobs done", PATIENCE, || {
        runs.done.lock().unwrap().len() == 2
    })
    .await;
    common::settled(&nats, &service, "Job", "both acknowledged").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        letters.count().await.unwrap(),
        0,
        "no letter for a later success"
    );
    assert_eq!((runs.of(1), runs.of(2)), (2, 3));
    serving.shutdown().await;
}

/// A consumer that crashes on an event never settles it: the server delivers it again after
/// the acknowledgement wait. Once it was delivered `max_deliveries` times, the next delivery is
/// set aside without running, kept once, and terminated. The crashes are pulls that never
/// acknowledge, made with plain async-nats on the service's durable consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_never_settles_is_set_aside_unrun_once_the_budget_is_spent() {
    let Some(corner) = Corner::new("never_settles").await else {
        return;
    };
    let ack_wait = Duration::from_secs(1);
    let nats = corner
        .transport()
        .max_deliveries(MAX_DELIVER)
        .ack_wait(ack_wait)
        .await
        .unwrap();
    let letters = MemoryDeadLetterStore::new();
    let service = common::unique("worker");
    let (app, runs) = worker(&nats, &service, &letters);
    // Serving once creates the durable consumer; the service is then down.
    app.serve().await.unwrap().shutdown().await;
    let id = Uuid::now_v7();
    app.publish_with(
        Job {
            id: 7,
            fail_times: 0,
            retryable: true,
        },
        Context::new().with_message_id(id),
    )
    .await
    .unwrap();

    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let stream = jetstream.get_stream(nats.stream_name()).await.unwrap();
    let crashing: PullConsumer = stream
        .get_consumer(&nats.durable_name(&service, "Job"))
        .await
        .unwrap();
    for delivery in 1..=MAX_DELIVER {
        let mut batch = crashing
            .fetch()
            .max_messages(1)
            .expires(ack_wait * 4)
            .messages()
            .await
            .unwrap();
        let message = batch.next().await.expect("a delivery").unwrap();
        let info = message.info().unwrap();
        assert_eq!(info.delivered, i64::from(delivery), "delivery {delivery}");
        // Crash: no acknowledgement; wait for the server to take it back.
        drop(message);
        tokio::time::sleep(ack_wait + Duration::from_millis(200)).await;
    }

    let serving = app.serve().await.unwrap();
    let kept = common::dead_letters(&letters, 1, "the event set aside").await;
    common::settled(&nats, &service, "Job", "terminated").await;
    tokio::time::sleep(ack_wait * 2).await;
    assert_eq!(letters.count().await.unwrap(), 1);
    assert_eq!(kept[0].code, "exhausted", "{:?}", kept[0]);
    assert_eq!(kept[0].message_id, id);
    assert_eq!(kept[0].attempts, MAX_DELIVER + 1);
    assert_eq!(runs.of(7), 0, "set aside without running again");
    serving.shutdown().await;
}

/// A store that refuses the first `failures` records.
#[derive(Clone)]
struct Flaky {
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

/// Nothing is acknowledged unkept: while the store fails, the event stays with the server and
/// is delivered again, until the store keeps its failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_dead_letter_store_cannot_keep_is_not_acknowledged() {
    let Some(corner) = Corner::new("store_cannot_keep").await else {
        return;
    };
    let nats = nats(&corner).await;
    let store = Flaky {
        inner: MemoryDeadLetterStore::new(),
        failures: Arc::new(AtomicU32::new(2)),
    };
    let runs = Arc::new(Runs::default());
    let service = common::unique("worker");
    let app = Catga::builder()
        .state_arc(runs.clone())
        .transport(nats.clone())
        .service(&service)
        .handlers(|h| h.name.starts_with("delivery::worker::"))
        .dead_letters(store.clone())
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    app.publish(Job {
        id: 9,
        fail_times: u32::MAX,
        retryable: false,
    })
    .await
    .unwrap();
    let kept = common::dead_letters(&store.inner, 1, "kept once the store works").await;
    common::settled(&nats, &service, "Job", "terminated once kept").await;
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "both failures were met"
    );
    assert_eq!(store.inner.count().await.unwrap(), 1);
    assert_eq!(
        runs.of(9),
        3,
        "not acknowledged while its failure could not be kept: delivered (and run) again each time"
    );
    assert_eq!(kept[0].code, "handler", "{:?}", kept[0]);
    assert_eq!(kept[0].attempts, 3);
    serving.shutdown().await;
}

/// A durable consumer created by an earlier version with the server's own delivery limit is
/// updated when the service serves: the limit goes, catga's budget decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_created_with_a_server_delivery_limit_loses_it() {
    let Some(corner) = Corner::new("server_delivery_limit").await else {
        return;
    };
    let nats = nats(&corner).await;
    let service = common::unique("worker");
    let durable = nats.durable_name(&service, "Job");
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let old = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: nats.event_subject("Job"),
        ack_policy: AckPolicy::Explicit,
        max_deliver: 5,
        deliver_policy: DeliverPolicy::New,
        ..Default::default()
    };
    jetstream
        .create_consumer_on_stream(old, nats.stream_name())
        .await
        .unwrap();
    let letters = MemoryDeadLetterStore::new();
    let (app, _) = worker(&nats, &service, &letters);
    let serving = app.serve().await.unwrap();
    let info = common::consumer_info(&nats, &service, "Job").await.unwrap();
    assert_eq!(
        info.config.max_deliver, -1,
        "the server never drops an event on its own"
    );
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(5),
        "the current settings"
    );
    serving.shutdown().await;
}
