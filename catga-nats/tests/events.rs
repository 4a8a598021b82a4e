//! Events over real JetStream: every service gets each event, the instances of a service
//! share them, failures are redelivered within the delivery budget (`delivery.rs` has the
//! rest of it), republished events are dropped by the server, the in-flight limit holds, and
//! shutdown acknowledges what it ran.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::Retryable;
use catga_core::prelude::*;
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE, eventually};
use tokio::sync::Notify;
use uuid::Uuid;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

/// Fails (retryably) until its handler saw it `fail_times` times.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky {
    pub order: u64,
    pub fail_times: u32,
    pub retryable: bool,
}

/// Waits until the test releases it.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("try again later ({0})")]
pub struct Busy(bool);

impl Retryable for Busy {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

/// What one instance saw.
#[derive(Default)]
pub struct Seen {
    placed: Mutex<Vec<u64>>,
    attempts: Mutex<HashMap<u64, u32>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
    started: AtomicU32,
    finished: AtomicU32,
    release: Notify,
}

impl Seen {
    fn sorted(&self) -> Vec<u64> {
        let mut placed = self.placed.lock().unwrap().clone();
        placed.sort_unstable();
        placed
    }

    fn attempts(&self, order: u64) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(&order)
            .copied()
            .unwrap_or(0)
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn placed(&self, event: &OrderPlaced) -> Result<(), Busy> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(now, Ordering::SeqCst);
            // Long enough for other events to arrive while this one runs.
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.placed
                .lock()
                .map_err(|_| Busy(false))?
                .push(event.order);
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }

        async fn flaky(&self, event: &Flaky) -> Result<(), Busy> {
            let seen = {
                let mut attempts = self.attempts.lock().map_err(|_| Busy(false))?;
                let n = attempts.entry(event.order).or_insert(0);
                *n += 1;
                *n
            };
            if seen <= event.fail_times {
                return Err(Busy(event.retryable));
            }
            Ok(())
        }

        async fn slow(&self, _event: &Slow) -> Result<(), Busy> {
            let released = self.release.notified();
            self.started.fetch_add(1, Ordering::SeqCst);
            released.await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

pub mod billing {
    use super::*;

    /// Billing's own count of placed orders.
    #[derive(Default)]
    pub struct Billed(pub Mutex<Vec<u64>>);

    #[handler]
    async fn bill(event: &OrderPlaced, billed: &Billed) -> Result<(), Busy> {
        billed.0.lock().map_err(|_| Busy(false))?.push(event.order);
        Ok(())
    }
}

fn shipping(nats: &NatsTransport, service: &str) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("events::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_every_service_once_and_instances_share_it() {
    let Some(corner) = Corner::new("an_event_reaches_every_service_once").await else {
        return;
    };
    let service = common::unique("shipping");
    let mut instances = Vec::new();
    let mut serving = Vec::new();
    for _ in 0..3 {
        let (app, seen) = shipping(&corner.connect().await, &service);
        serving.push(app.serve().await.unwrap());
        instances.push(seen);
    }
    let billed = Arc::new(billing::Billed::default());
    let billing = Catga::builder()
        .state_arc(billed.clone())
        .transport(corner.connect().await)
        .service(common::unique("billing"))
        .handlers(|h| h.name.starts_with("events::billing::"))
        .build()
        .unwrap();
    serving.push(billing.serve().await.unwrap());

    let publisher = corner.connect().await;
    let orders = Catga::builder()
        .transport(publisher)
        .handlers(|_| false)
        .build()
        .unwrap();
    let published =
        futures::future::join_all((0..60).map(|order| orders.publish(OrderPlaced { order }))).await;
    assert!(published.iter().all(Result::is_ok), "{published:?}");

    let shipped = || {
        let mut all: Vec<u64> = instances.iter().flat_map(|s| s.sorted()).collect();
        all.sort_unstable();
        all
    };
    eventually("both services to handle all 60 events", PATIENCE, || {
        shipped().len() >= 60 && billed.0.lock().unwrap().len() >= 60
    })
    .await;
    assert_eq!(
        shipped(),
        (0..60).collect::<Vec<_>>(),
        "the shipping instances handled each event once between them"
    );
    let mut billed_orders = billed.0.lock().unwrap().clone();
    billed_orders.sort_unstable();
    assert_eq!(
        billed_orders,
        (0..60).collect::<Vec<_>>(),
        "and billing, too"
    );
    let shares: Vec<usize> = instances.iter().map(|s| s.sorted().len()).collect();
    assert!(
        shares.iter().filter(|&&n| n > 0).count() >= 2,
        "the instances shared the events: {shares:?}"
    );
    for s in serving {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_redelivered_until_it_succeeds() {
    let Some(corner) = Corner::new("a_retryable_failure_is_redelivered").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = common::unique("shipping");
    let (app, seen) = shipping(&nats, &service);
    let serving = app.serve().await.unwrap();
    app.publish(Flaky {
        order: 1,
        fail_times: 2,
        retryable: true,
    })
    .await
    .unwrap();
    eventually("the third delivery", PATIENCE, || seen.attempts(1) == 3).await;
    common::settled(
        &nats,
        &service,
        "Flaky",
        "the successful delivery to be acknowledged",
    )
    .await;
    assert_eq!(seen.attempts(1), 3, "and not delivered again");
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_runs_at_most_max_deliver_times_then_is_terminated() {
    let Some(corner) = Corner::new("a_failing_event_is_delivered_at_most").await else {
        return;
    };
    let nats = corner.transport().max_deliveries(3).await.unwrap();
    let service = common::unique("shipping");
    let (app, seen) = shipping(&nats, &service);
    let serving = app.serve().await.unwrap();
    app.publish(Flaky {
        order: 1,
        fail_times: u32::MAX,
        retryable: true,
    })
    .await
    .unwrap();
    app.publish(Flaky {
        order: 2,
        fail_times: u32::MAX,
        retryable: false,
    })
    .await
    .unwrap();
    eventually(
        "three deliveries of the retryable failure",
        PATIENCE,
        || seen.attempts(1) == 3,
    )
    .await;
    common::settled(
        &nats,
        &service,
        "Flaky",
        "the last delivery to be terminated, not left pending",
    )
    .await;
    // Longer than every backoff step: a fourth delivery would have happened by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.attempts(1), 3, "max_deliveries bounds the deliveries");
    assert_eq!(seen.attempts(2), 1, "a final failure is not redelivered");
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_event_is_dropped_by_the_server() {
    let Some(corner) = Corner::new("a_republished_event_is_dropped").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, seen) = shipping(&nats, &common::unique("shipping"));
    let serving = app.serve().await.unwrap();
    let id = Uuid::now_v7();
    for _ in 0..3 {
        app.publish_with(OrderPlaced { order: 1 }, Context::new().with_message_id(id))
            .await
            .unwrap();
    }
    app.publish(OrderPlaced { order: 2 }).await.unwrap();
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let mut stream = jetstream.get_stream(nats.stream_name()).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert_eq!(last, 2, "three copies with one id stored once");
    eventually("both orders", PATIENCE, || seen.sorted().len() >= 2).await;
    assert_eq!(seen.sorted(), vec![1, 2]);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_runs_at_most_max_in_flight_handlers() {
    let Some(corner) = Corner::new("an_instance_runs_at_most_max_in_flight").await else {
        return;
    };
    let nats = corner.connect().await;
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(nats.clone())
        .service(common::unique("shipping"))
        .handlers(|h| h.name.starts_with("events::shipping::"))
        .serve_max_in_flight(2)
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    let published =
        futures::future::join_all((0..40).map(|order| app.publish(OrderPlaced { order }))).await;
    assert!(published.iter().all(Result::is_ok));
    eventually("all 40 events", PATIENCE, || seen.sorted().len() >= 40).await;
    let most = seen.most_running.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} handlers ran at once; the limit is 2");
    assert_eq!(seen.sorted(), (0..40).collect::<Vec<_>>());
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_events_in_flight_and_acknowledges_them() {
    let Some(corner) = Corner::new("shutdown_waits_for_events_in_flight").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = common::unique("shipping");
    let (app, seen) = shipping(&nats, &service);
    let serving = app.serve().await.unwrap();
    app.publish(Slow { order: 1 }).await.unwrap();
    eventually("the handler to start", PATIENCE, || {
        seen.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let stopping = tokio::spawn(serving.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown must wait for the event in flight"
    );
    seen.release.notify_waiters();
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown finishes once the handler does")
        .unwrap();
    assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
    assert_eq!(
        common::backlog(&nats, &service, "Slow").await,
        Some((0, 0)),
        "acknowledged before shutdown returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_server_lost_is_created_again_and_consumption_resumes() {
    let Some(corner) = Corner::new("a_stream_the_server_lost").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = common::unique("shipping");
    let (app, seen) = shipping(&nats, &service);
    let serving = app.serve().await.unwrap();
    let publisher = Catga::builder()
        .transport(corner.connect().await)
        .handlers(|_| false)
        .build()
        .unwrap();
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    // As a server restarted without its store would: no stream, no consumers.
    jetstream.delete_stream(nats.stream_name()).await.unwrap();

    // Publishing creates the stream again.
    publisher.publish(OrderPlaced { order: 1 }).await.unwrap();
    assert!(jetstream.get_stream(nats.stream_name()).await.is_ok());

    // The consumer re-creates its durable consumer and resumes.
    let durable = nats.durable_name(&service, "OrderPlaced");
    let recreated = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(stream) = jetstream.get_stream(nats.stream_name()).await
                && stream
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        recreated.is_ok(),
        "the durable consumer {durable} came back"
    );
    publisher.publish(OrderPlaced { order: 2 }).await.unwrap();
    eventually("the event published after recovery", PATIENCE, || {
        seen.sorted().contains(&2)
    })
    .await;
    serving.shutdown().await;
}

/// A publish that finds the stream gone creates it and sends the event again, whatever its
/// context set: the second attempt's headers are built again from what the publish kept (the
/// message id alone, or the envelope; `headers.rs` tests that both give the same headers).
/// Stored events are not read back here: the stream keeps an event only while a consumer
/// wants it (interest retention), and the recreated stream has none yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_after_the_stream_was_lost_succeeds_whatever_its_context() {
    let Some(corner) = Corner::new("republished_with_context").await else {
        return;
    };
    let nats = corner.connect().await;
    let stream_name = nats.stream_name().to_string();
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let publisher = Catga::builder()
        .transport(nats)
        .handlers(|_| false)
        .build()
        .unwrap();
    let contexts = [
        Context::new(),
        Context::new().with_header("tenant", "acme"),
        Context::new().with_causation_id(Uuid::now_v7()),
    ];
    for (order, ctx) in (1..).zip(contexts) {
        jetstream.delete_stream(&stream_name).await.unwrap();
        publisher
            .publish_with(OrderPlaced { order }, ctx)
            .await
            .unwrap();
        let stream = jetstream.get_stream(&stream_name).await;
        assert!(stream.is_ok(), "order {order}: the stream is back");
    }
}
