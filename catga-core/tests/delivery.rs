//! The delivery rules on the in-memory transport (the NATS and Redis crates test the same
//! rules against real servers): a message is acknowledged only after it was handled or kept
//! in the dead-letter store; one poison message leaves exactly one dead letter; a deadline
//! bounds the publisher, not the subscribers; the route decides what a message is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::{DeadLetter, Retry};
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{
    DeadLetterRecord, DeadLetterStore, FailureStage, MemoryDeadLetterStore,
};
use catga_core::transport::{MemoryTransport, Transport};
use catga_core::{BoxError, MessageKind, WireFormat};

#[derive(Debug, thiserror::Error)]
#[error("cannot process (retryable: {0})")]
pub struct Bad(bool);

impl Retryable for Bad {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

/// Runs of each handler, per test (state is registered per application).
#[derive(Default)]
pub struct Runs(AtomicU32);

impl Runs {
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Waits (on the paused clock) until `done` holds, for at most a minute of virtual time.
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..6_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn producer(bus: &MemoryTransport) -> Catga {
    Catga::builder()
        .transport(bus.clone())
        .service("producer")
        .handlers(|_| false)
        .build()
        .unwrap()
}

pub mod poison {
    use super::*;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Poison {
        pub retryable: bool,
    }

    #[handler]
    async fn poison(event: &Poison, runs: &Runs) -> Result<(), Bad> {
        runs.bump();
        Err(Bad(event.retryable))
    }
}

/// A consumer of `Poison` with `DeadLetter` outside `Retry(2)`, as the docs recommend.
fn poison_consumer(
    bus: &MemoryTransport,
    letters: &MemoryDeadLetterStore,
    runs: Arc<Runs>,
) -> Catga<impl catga_core::pipeline::Layer> {
    Catga::builder()
        .state_arc(runs)
        .transport(bus.clone())
        .service("consumer")
        .handlers(|h| h.name.starts_with("delivery::poison::"))
        .layer(DeadLetter::new(letters.clone()))
        .layer(Retry::exponential(2).base_delay(Duration::from_millis(1)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn one_poison_event_leaves_exactly_one_dead_letter_and_stops() {
    for retryable in [true, false] {
        let bus = MemoryTransport::new().max_deliveries(3, Duration::from_millis(20));
        let letters = MemoryDeadLetterStore::new();
        let runs = Arc::new(Runs::default());
        let consumer = poison_consumer(&bus, &letters, runs.clone());
        let serving = consumer.serve().await.unwrap();
        producer(&bus)
            .publish(poison::Poison { retryable })
            .await
            .unwrap();
        settle(|| runs.get() >= if retryable { 3 } else { 1 }).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The transport's redelivery is the retry: Retry(2) does not multiply it.
        let want = if retryable { 3 } else { 1 };
        assert_eq!(
            runs.get(),
            want,
            "handler runs for one event (retryable: {retryable})"
        );
        let kept = letters.list(10).await.unwrap();
        assert_eq!(kept.len(), 1, "one letter for one event: {kept:?}");
        assert_eq!(kept[0].attempts, want, "the final delivery's number");
        assert_eq!(kept[0].handler.as_deref(), Some("delivery::poison::poison"));
        assert_eq!(
            consumer.dead_letters().count_dyn().await.unwrap(),
            0,
            "kept by the layer, not twice"
        );
        serving.shutdown().await;
    }
}

pub mod flaky {
    use super::*;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Flaky;

    /// Fails its first two runs, retryably.
    #[handler]
    async fn flaky(_event: &Flaky, runs: &Runs) -> Result<(), Bad> {
        if runs.bump() <= 2 {
            Err(Bad(true))
        } else {
            Ok(())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_event_that_succeeds_on_a_later_delivery_leaves_no_dead_letter() {
    let bus = MemoryTransport::new().max_deliveries(3, Duration::from_millis(20));
    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("consumer")
        .handlers(|h| h.name.starts_with("delivery::flaky::"))
        .layer(DeadLetter::new(letters.clone()))
        .layer(Retry::exponential(2).base_delay(Duration::from_millis(1)))
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    producer(&bus).publish(flaky::Flaky).await.unwrap();
    settle(|| runs.get() >= 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs.get(), 3, "handled on its third delivery");
    assert_eq!(letters.count().await.unwrap(), 0);
    assert_eq!(consumer.dead_letters().count_dyn().await.unwrap(), 0);
    serving.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_dead_letter_layer_the_applications_store_keeps_the_final_failure() {
    let bus = MemoryTransport::new().max_deliveries(2, Duration::from_millis(20));
    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("consumer")
        .handlers(|h| h.name.starts_with("delivery::poison::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    producer(&bus)
        .publish(poison::Poison { retryable: true })
        .await
        .unwrap();
    settle(|| runs.get() >= 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kept = letters.list(10).await.unwrap();
    assert_eq!(runs.get(), 2);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].stage, FailureStage::Handler);
    assert_eq!(kept[0].code, "handler");
    assert_eq!(kept[0].attempts, 2);
    assert_eq!(
        kept[0].payload.as_deref(),
        Some(&br#"{"retryable":true}"#[..])
    );
    // Replaying it runs the handler here again (and it fails again, into the same store via
    // the failing dispatch's error).
    let replay = consumer.replay_dead_letter(&letters, kept[0].id).await;
    assert!(replay.is_err());
    assert_eq!(runs.get(), 3);
    serving.shutdown().await;
}

/// A store that fails its first `failures` puts, then keeps records.
#[derive(Clone, Default)]
struct Flaky {
    failures: Arc<AtomicU32>,
    inner: MemoryDeadLetterStore,
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
    async fn take(&self, id: uuid::Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        self.inner.take(id).await
    }
    async fn count(&self) -> Result<usize, BoxError> {
        self.inner.count().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_not_acknowledged_until_the_store_kept_it() {
    let bus = MemoryTransport::new().max_deliveries(2, Duration::from_millis(20));
    let store = Flaky {
        failures: Arc::new(AtomicU32::new(3)),
        ..Flaky::default()
    };
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("consumer")
        .handlers(|h| h.name.starts_with("delivery::poison::"))
        .dead_letters(store.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    producer(&bus)
        .publish(poison::Poison { retryable: false })
        .await
        .unwrap();
    settle(|| store.inner.list(1).now_or_never_len() == 1).await;
    let kept = store.inner.list(10).await.unwrap();
    assert_eq!(kept.len(), 1, "kept once the store came back");
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "three puts failed first"
    );
    // Each failed put meant a redelivery, not an acknowledgement; the deliveries after the
    // transport's last one are set aside without running the handler again.
    assert_eq!(runs.get(), 2, "handler runs: at most max_deliveries");
    // The record still says what failed, though it was kept past the last delivery.
    assert_eq!(kept[0].code, "handler", "{kept:?}");
    assert_eq!(kept[0].stage, FailureStage::Handler);
    assert!(
        kept[0].error.contains("cannot process"),
        "{}",
        kept[0].error
    );
    serving.shutdown().await;
}

/// `list(…).now_or_never_len()`: how many records the in-memory store holds right now.
trait NowLen {
    fn now_or_never_len(self) -> usize;
}

impl<F: std::future::Future<Output = Result<Vec<DeadLetterRecord>, BoxError>>> NowLen for F {
    fn now_or_never_len(self) -> usize {
        futures::FutureExt::now_or_never(self)
            .and_then(Result::ok)
            .map_or(0, |v| v.len())
    }
}

pub mod shipping {
    use super::*;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Shipped {
        pub order: u64,
    }

    #[command]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Ship {
        pub order: u64,
    }

    /// A database write that takes a while.
    #[handler]
    async fn on_shipped(_event: &Shipped, runs: &Runs) -> Result<(), Bad> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        runs.bump();
        Ok(())
    }

    /// Publishes `Shipped` from a request whose caller set a deadline.
    #[handler]
    async fn ship(cmd: Ship, ctx: &Context) -> Result<(), Bad> {
        ctx.publish(Shipped { order: cmd.order })
            .map_err(|_| Bad(false))
    }
}

#[tokio::test(start_paused = true)]
async fn an_events_deadline_bounds_its_publisher_not_its_subscribers() {
    let bus = MemoryTransport::new();
    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    // One handler at a time: the later events wait in the queue far past their deadline.
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("shipping")
        .handlers(|h| h.name == "delivery::shipping::on_shipped")
        .serve_max_in_flight(1)
        .layer(DeadLetter::new(letters.clone()))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    let orders = Catga::builder()
        .transport(bus.clone())
        .service("orders")
        .handlers(|h| h.name == "delivery::shipping::ship")
        .build()
        .unwrap();
    for order in 0..20 {
        let ctx = Context::new().with_timeout(Duration::from_millis(100));
        orders
            .publish_with(shipping::Shipped { order }, ctx)
            .await
            .unwrap();
    }
    for order in 20..40 {
        // `ctx.publish` inside a request whose caller set a timeout.
        let ctx = Context::new().with_timeout(Duration::from_millis(100));
        orders
            .send_with(shipping::Ship { order }, ctx)
            .await
            .unwrap();
    }
    settle(|| runs.get() == 40).await;
    assert_eq!(
        runs.get(),
        40,
        "every event handled, 50 ms each, one at a time"
    );
    assert_eq!(letters.count().await.unwrap(), 0, "none kept: none failed");
    serving.shutdown().await;
}

pub mod routed {
    use super::*;

    #[command(output = u64)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Refund {
        pub cents: u64,
    }

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Viewed {
        pub page: u64,
    }

    #[handler]
    async fn refund(cmd: Refund, runs: &Runs) -> Result<u64, Bad> {
        runs.bump();
        Ok(cmd.cents)
    }

    #[handler]
    async fn viewed(_event: &Viewed) -> Result<(), Bad> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn where_a_message_arrived_decides_what_it_is() {
    let bus = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let shop = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("shop")
        .handlers(|h| h.name.starts_with("delivery::routed::"))
        .build()
        .unwrap();
    let serving = shop.serve().await.unwrap();
    // On the route of the event `Viewed`, an envelope that says it is a command.
    let smuggled = Envelope::with_payload(
        "Viewed",
        MessageKind::Command,
        &Context::new(),
        WireFormat::Json,
        br#"{"page":1}"#.to_vec(),
    );
    bus.publish(smuggled).await.unwrap();
    settle(|| {
        futures::FutureExt::now_or_never(shop.dead_letters().count_dyn())
            .and_then(Result::ok)
            .unwrap_or(0)
            == 1
    })
    .await;
    let kept = shop.dead_letters().list_dyn(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].code, "envelope");
    assert_eq!(kept[0].stage, FailureStage::Delivery);
    assert!(
        kept[0].error.contains("says its kind is `command`"),
        "{}",
        kept[0].error
    );
    assert_eq!(runs.get(), 0, "no handler ran");
    serving.shutdown().await;
}
