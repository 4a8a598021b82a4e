//! The delivery budget is catga's, on JetStream: a delivery that never settled (its consumer
//! crashed each time) is set aside unrun once the budget is spent, and the server's own
//! `max_deliver` is off, also on a durable consumer created with one by an earlier version.
//! (The budget as every transport keeps it, dead letters included, is the conformance
//! suite's `delivery` family.)

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use catga_core::Retryable;
use catga_core::behavior::{DeadLetter, Retry};
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::{dead_letters, settled, unique};
use catga_nats::NatsTransport;
use common::{Corner, Options};
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
        .connect_with(Options {
            max_deliveries: Some(MAX_DELIVER),
            ..corner.options()
        })
        .await
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

/// A consumer that crashes on an event never settles it: the server delivers it again after
/// the acknowledgement wait. Once it was delivered `max_deliver` times, the next delivery is
/// set aside without running, kept once, and terminated. The crashes are pulls that never
/// acknowledge, made with plain async-nats on the service's durable consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_never_settles_is_set_aside_unrun_once_the_budget_is_spent() {
    let Some(corner) = Corner::new("never_settles").await else {
        return;
    };
    let ack_wait = Duration::from_secs(1);
    let nats = corner
        .connect_with(Options {
            max_deliveries: Some(MAX_DELIVER),
            ack_wait: Some(ack_wait),
            ..corner.options()
        })
        .await;
    let letters = MemoryDeadLetterStore::new();
    let service = unique("worker");
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
    let kept = dead_letters(&letters, 1, "the event set aside").await;
    settled(&corner, &service, "Job", "terminated").await;
    tokio::time::sleep(ack_wait * 2).await;
    assert_eq!(letters.count().await.unwrap(), 1);
    assert_eq!(kept[0].code, "exhausted", "{:?}", kept[0]);
    assert_eq!(kept[0].message_id, id);
    assert_eq!(kept[0].attempts, MAX_DELIVER + 1);
    assert_eq!(runs.of(7), 0, "set aside without running again");
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
    let service = unique("worker");
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
