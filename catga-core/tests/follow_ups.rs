//! A request that succeeded returns its reply: what becomes of the events its handler queued
//! (`ctx.publish`) never changes the result. Follow-ups of a failed attempt are dropped;
//! follow-ups that fail go where failed events go; a caller's deadline bounds the caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::{DeadLetter, Idempotency, IdempotencyKey, Retry, Timeout};
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, FailureStage, MemoryDeadLetterStore};
use catga_core::transport::{
    Inbound, MemoryTransport, Reply, ServePlan, Serving, Transport, TransportError,
};
use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
#[error("transient")]
pub struct Transient;

impl Retryable for Transient {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[derive(Debug, thiserror::Error)]
#[error("fatal")]
pub struct Fatal;

/// What ran, per test.
#[derive(Default)]
pub struct Seen {
    placed: AtomicU32,
    mails: AtomicU32,
    events: [AtomicU32; 8],
}

impl Seen {
    fn events(&self, tag: usize) -> u32 {
        self.events[tag].load(Ordering::SeqCst)
    }
}

/// Each test runs some of this file's handlers: the commands it leaves out are handled
/// "elsewhere" as far as the build check goes.
fn others<L: catga_core::pipeline::Layer>(
    builder: catga_core::CatgaBuilder<L>,
) -> catga_core::CatgaBuilder<L> {
    builder
        .allow_unhandled::<p03::FailHard>()
        .allow_unhandled::<p03::FailOnce>()
        .allow_unhandled::<p03::Slow>()
        .allow_unhandled::<orders::PlaceOrder>()
        .allow_unhandled::<slow_follow_up::Book>()
        .allow_unhandled::<commit::Commit>()
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ev {
    pub tag: usize,
}

pub mod p03 {
    use super::*;

    #[command]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FailHard;

    #[command]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct FailOnce;

    #[command(timeout = "50ms")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Slow;

    #[handler]
    async fn on_ev(event: &Ev, seen: &Seen) -> Result<(), Fatal> {
        seen.events
            .get(event.tag)
            .ok_or(Fatal)?
            .fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[handler]
    async fn fail_hard(_cmd: FailHard, ctx: &Context) -> Result<(), Fatal> {
        ctx.publish(Ev { tag: 1 }).map_err(|_| Fatal)?;
        Err(Fatal)
    }

    #[handler]
    async fn fail_once(_cmd: FailOnce, ctx: &Context) -> Result<(), Transient> {
        ctx.publish(Ev { tag: 2 }).map_err(|_| Transient)?;
        if ctx.attempt() == 1 {
            Err(Transient)
        } else {
            Ok(())
        }
    }

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Sibling;

    /// Fails its first attempt, after queueing an event.
    #[handler]
    async fn x(_event: &Sibling, ctx: &Context, seen: &Seen) -> Result<(), Transient> {
        let first = seen.placed.fetch_add(1, Ordering::SeqCst) == 0;
        ctx.publish(Ev { tag: 4 }).map_err(|_| Transient)?;
        if first { Err(Transient) } else { Ok(()) }
    }

    /// Its sibling, which succeeds while `x` is retried.
    #[handler]
    async fn y(_event: &Sibling, ctx: &Context) -> Result<(), Transient> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        ctx.publish(Ev { tag: 5 }).map_err(|_| Transient)?;
        Ok(())
    }

    #[handler]
    async fn slow(_cmd: Slow, ctx: &Context) -> Result<(), Fatal> {
        ctx.publish(Ev { tag: 3 }).map_err(|_| Fatal)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_announces_nothing_and_a_retried_one_once() {
    let seen = Arc::new(Seen::default());
    let app = others(Catga::builder())
        .state_arc(seen.clone())
        .handlers(|h| h.name.starts_with("follow_ups::p03::"))
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(1)))
        .layer(Timeout::new(Duration::from_secs(5)))
        .build()
        .unwrap();
    assert!(app.send(p03::FailHard).await.is_err());
    assert_eq!(seen.events(1), 0, "queued by a handler that failed");
    app.send(p03::FailOnce).await.unwrap();
    assert_eq!(
        seen.events(2),
        1,
        "one failed and one good attempt: published once"
    );
    let err = app.send(p03::Slow).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seen.events(3), 0, "queued before the timeout");
    app.publish(p03::Sibling).await.unwrap();
    assert_eq!(seen.events(4), 1, "x's event: once, from its good attempt");
    assert_eq!(
        seen.events(5),
        1,
        "its sibling's event is untouched by x's retry"
    );
}

pub mod orders {
    use super::*;

    #[command(output = u64, idempotent)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct PlaceOrder {
        pub key: String,
    }

    impl IdempotencyKey for PlaceOrder {
        fn idempotency_key(&self) -> String {
            self.key.clone()
        }
    }

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct OrderPlaced {
        pub id: u64,
    }

    #[handler]
    async fn place(_cmd: PlaceOrder, ctx: &Context, seen: &Seen) -> Result<u64, Transient> {
        let id = u64::from(seen.placed.fetch_add(1, Ordering::SeqCst)) + 1;
        ctx.publish(OrderPlaced { id }).map_err(|_| Transient)?;
        Ok(id)
    }

    /// The mail server is down for good.
    #[handler]
    async fn mail(_event: &OrderPlaced, seen: &Seen) -> Result<(), Transient> {
        seen.mails.fetch_add(1, Ordering::SeqCst);
        Err(Transient)
    }
}

#[tokio::test(start_paused = true)]
async fn a_committed_command_returns_its_reply_when_a_follow_up_handler_fails() {
    let seen = Arc::new(Seen::default());
    let letters = MemoryDeadLetterStore::new();
    let app = others(Catga::builder())
        .state_arc(seen.clone())
        .handlers(|h| h.name.starts_with("follow_ups::orders::"))
        .layer(DeadLetter::new(letters.clone()))
        .layer(Idempotency::default())
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(1)))
        .build()
        .unwrap();
    let place = || orders::PlaceOrder { key: "k1".into() };
    assert_eq!(app.send(place()).await.unwrap(), 1, "the order was placed");
    // A caller that retries on error would run the command again; it got no error.
    assert_eq!(app.send(place()).await.unwrap(), 1, "the same reply");
    assert_eq!(seen.placed.load(Ordering::SeqCst), 1, "placed once");
    assert_eq!(
        seen.mails.load(Ordering::SeqCst),
        3,
        "the mail handler retried in-process"
    );
    let kept = letters.list(10).await.unwrap();
    assert_eq!(
        kept.len(),
        1,
        "the failed follow-up is dead-lettered once: {kept:?}"
    );
    assert_eq!(kept[0].message, "OrderPlaced");
    assert_eq!(kept[0].handler.as_deref(), Some("follow_ups::orders::mail"));
}

pub mod commit {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Commit;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Committed;

    #[handler]
    async fn commit(_cmd: Commit, ctx: &Context, seen: &Seen) -> Result<u32, Fatal> {
        seen.placed.fetch_add(1, Ordering::SeqCst);
        ctx.publish(Committed).map_err(|_| Fatal)?;
        Ok(42)
    }

    #[handler]
    async fn committed(_event: &Committed, seen: &Seen) -> Result<(), Transient> {
        seen.mails.fetch_add(1, Ordering::SeqCst);
        Err(Transient)
    }
}

/// The reproducer `p03_followups_on_failure` as it was written: only `Retry` and `Timeout`,
/// nothing that would hide a second run.
#[tokio::test(start_paused = true)]
async fn p03_a_committed_command_is_reported_and_a_retrying_caller_runs_it_once() {
    let seen = Arc::new(Seen::default());
    let app = others(Catga::builder())
        .state_arc(seen.clone())
        .handlers(|h| h.name.starts_with("follow_ups::commit::"))
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(1)))
        .layer(Timeout::new(Duration::from_secs(5)))
        .build()
        .unwrap();
    assert_eq!(app.send(commit::Commit).await.unwrap(), 42);
    assert_eq!(seen.placed.load(Ordering::SeqCst), 1);

    seen.placed.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        match app.send(commit::Commit).await {
            Err(e) if e.is_retryable() => continue,
            other => {
                assert_eq!(other.unwrap(), 42);
                break;
            }
        }
    }
    assert_eq!(
        seen.placed.load(Ordering::SeqCst),
        1,
        "a retrying caller ran it once"
    );
    assert_eq!(
        seen.mails.load(Ordering::SeqCst),
        6,
        "each follow-up retried in-process, three tries each"
    );
    let kept = app.dead_letters().list(10).await.unwrap();
    assert_eq!(kept.len(), 2, "each failed follow-up kept once: {kept:?}");
    assert!(kept.iter().all(|r| r.message == "Committed"), "{kept:?}");
}

/// A transport that refuses the first `refusals` publishes (the broker is away), then
/// delivers through an in-memory bus.
#[derive(Clone)]
struct Refusing {
    refusals: Arc<AtomicU32>,
    bus: MemoryTransport,
}

impl Transport for Refusing {
    fn name(&self) -> &'static str {
        "refusing"
    }
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async {
                Err(TransportError::Unreachable("the broker is away".into()))
            });
        }
        self.bus.publish(envelope)
    }
    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        self.bus.request(envelope, timeout)
    }
    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        self.bus.serve(plan, inbound)
    }
}

pub mod mailer {
    use super::*;

    #[handler]
    async fn mail_ok(_event: &orders::OrderPlaced, seen: &Seen) -> Result<(), Fatal> {
        seen.mails.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_follow_up_the_transport_refused_is_kept_and_replayed() {
    let seen = Arc::new(Seen::default());
    let bus = MemoryTransport::new();
    let transport = Refusing {
        refusals: Arc::new(AtomicU32::new(1)),
        bus: bus.clone(),
    };
    let orders = Catga::builder()
        .state_arc(seen.clone())
        .transport(transport)
        .service("orders")
        .handlers(|h| h.name == "follow_ups::orders::place")
        .build()
        .unwrap();
    let mailer = Catga::builder()
        .state_arc(seen.clone())
        .transport(bus.clone())
        .service("mailer")
        .handlers(|h| h.name.starts_with("follow_ups::mailer::"))
        .build()
        .unwrap();
    let serving = mailer.serve().await.unwrap();
    let reply = orders
        .send(orders::PlaceOrder { key: "k".into() })
        .await
        .unwrap();
    assert_eq!(
        reply, 1,
        "the order committed; the broker being away does not undo that"
    );
    let kept = orders.dead_letters().list_dyn(10).await.unwrap();
    assert_eq!(kept.len(), 1, "kept for replay: {kept:?}");
    assert_eq!(kept[0].stage, FailureStage::Publish);
    assert_eq!(kept[0].message, "OrderPlaced");
    assert_eq!(kept[0].code, "transport");
    assert_eq!(seen.mails.load(Ordering::SeqCst), 0);
    // The broker is back: replay publishes it, and the mailer gets it.
    orders
        .replay_dead_letter(orders.dead_letters(), kept[0].id)
        .await
        .unwrap();
    for _ in 0..100 {
        if seen.mails.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.mails.load(Ordering::SeqCst), 1);
    assert_eq!(orders.dead_letters().count_dyn().await.unwrap(), 0);
    serving.shutdown().await;
}

pub mod slow_follow_up {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Book;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Booked;

    #[handler]
    async fn book(_cmd: Book, ctx: &Context) -> Result<u32, Fatal> {
        ctx.publish(Booked).map_err(|_| Fatal)?;
        Ok(9)
    }

    /// Takes a second; a caller waits 100 ms at most.
    #[handler]
    async fn on_booked(_event: &Booked, ctx: &Context, seen: &Seen) -> Result<(), Fatal> {
        assert!(
            ctx.deadline().is_none(),
            "the caller's deadline stays with the caller"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen.events
            .first()
            .ok_or(Fatal)?
            .fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_bounds_its_wait_and_the_handlers_finish_in_the_background() {
    let seen = Arc::new(Seen::default());
    let app = others(Catga::builder())
        .state_arc(seen.clone())
        .handlers(|h| h.name.starts_with("follow_ups::slow_follow_up::"))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let ctx = Context::new().with_timeout(Duration::from_millis(100));
    let reply = app.send_with(slow_follow_up::Book, ctx).await.unwrap();
    assert_eq!(reply, 9, "the command's reply, at the caller's deadline");
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(seen.events(0), 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        seen.events(0),
        1,
        "the follow-up's handler finished in the background"
    );

    let ctx = Context::new().with_timeout(Duration::from_millis(100));
    let err = app
        .publish_with(slow_follow_up::Booked, ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "the publisher stopped waiting");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.events(0), 2, "the handler was not dropped half-way");
}
