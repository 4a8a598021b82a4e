//! JetStream's own side of things: a republished event (same message id) is dropped by the
//! server; a stream the server lost is created again, by a publish and by the consumers, and
//! consumption resumes; a stopped instance leaves no pull waiting on the server. (What every
//! transport promises about events is the conformance suite's `events` and `lifecycle`
//! families.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::testkit::{PATIENCE, eventually, unique};
use catga_nats::NatsTransport;
use common::Corner;
use uuid::Uuid;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What one instance saw.
#[derive(Default)]
pub struct Seen {
    placed: Mutex<Vec<u64>>,
    ticks: AtomicU64,
}

impl Seen {
    fn sorted(&self) -> Vec<u64> {
        let mut placed = self.placed.lock().unwrap().clone();
        placed.sort_unstable();
        placed
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn placed(&self, event: &OrderPlaced) -> Result<(), Never> {
            self.placed.lock().map_err(|_| Never)?.push(event.order);
            Ok(())
        }

        async fn tick(&self, _tick: &Tick) -> Result<(), Never> {
            self.ticks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn shipping(nats: &NatsTransport, service: &str) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("jetstream::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_event_is_dropped_by_the_server() {
    let Some(corner) = Corner::new("a_republished_event_is_dropped").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, seen) = shipping(&nats, &unique("shipping"));
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
    eventually("both orders", || async { seen.sorted().len() >= 2 }).await;
    assert_eq!(seen.sorted(), vec![1, 2]);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_server_lost_is_created_again_and_consumption_resumes() {
    let Some(corner) = Corner::new("a_stream_the_server_lost").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = unique("shipping");
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
    eventually("the event published after recovery", || async {
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

/// After shutdown the server has no pull of the instance waiting: an event published then
/// stays pending for the service, delivered to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_leaves_no_pull_on_the_server() {
    let Some(corner) = Corner::new("a_stopped_instance_leaves_no_pull").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = unique("worker");
    let (app, seen) = shipping(&nats, &service);
    let serving = app.serve().await.unwrap();
    let waiting = tokio::time::timeout(PATIENCE, async {
        loop {
            let info = common::consumer_info(&nats, &service, "Tick")
                .await
                .unwrap();
            if info.num_waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waiting.is_ok(), "the instance pulls while serving");
    serving.shutdown().await;
    let info = common::consumer_info(&nats, &service, "Tick")
        .await
        .unwrap();
    assert_eq!(
        info.num_waiting, 0,
        "no pull left on the server after shutdown"
    );
    app.publish(Tick { n: 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = common::consumer_info(&nats, &service, "Tick")
        .await
        .unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (1, 0),
        "the event waits for the service, delivered to nobody"
    );
    assert_eq!(seen.ticks.load(Ordering::SeqCst), 0);
}
