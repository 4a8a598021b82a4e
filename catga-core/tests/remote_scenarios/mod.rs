//! What a request that crosses a transport promises, in scenarios every transport runs:
//!
//! - a command that committed returns its reply, whatever its follow-up events meet later
//!   (the reproducers `p03_followups_on_failure` and `nc_r03_follow_up_failure`): a follow-up
//!   handler in another service that keeps failing is kept there once per event, a follow-up
//!   the transport refuses is kept in the publishing application's store, and neither turns
//!   the caller's `Ok` into a retryable error that would run the command again;
//! - a remote command that timed out may have run, so the caller's `Retry` runs it again only
//!   when it is declared `idempotent` (`nc_r06_idempotent_flag`, `nc_r07_retry_non_idempotent`);
//! - a request sent before its service runs is handled once, not lost and not run twice;
//! - an event is a fact, not a request: a publisher's deadline bounds the publisher, not the
//!   subscribers (`rel_r4_deadline_event`), on transports that keep events for a service
//!   that is down.
//!
//! Included by catga-core's `remote.rs` (in-memory transport) and by the `remote.rs` tests of
//! catga-nats and catga-redis (real servers): one implementation, each transport given by a
//! `connect` function that returns a fresh connection, as a separate process would hold.

#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::transport::{Serving, Transport};

/// A failure worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("the mail server is busy")]
pub struct Busy;

impl Retryable for Busy {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// How often each handler started.
#[derive(Default)]
pub struct Ledger {
    pub commits: AtomicU32,
    pub mails: AtomicU32,
    pub charges: AtomicU32,
    pub captures: AtomicU32,
    pub shipped: AtomicU32,
}

fn count(n: &AtomicU32) -> u32 {
    n.load(Ordering::SeqCst)
}

/// Commits an order and announces it.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    /// Bytes carried by the announcement (to make a transport refuse it).
    pub note_bytes: usize,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub note: String,
}

/// Ships an order and announces it.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub order: u64,
}

/// Not declared idempotent: charging twice charges twice.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeCard {
    pub cents: u32,
}

/// Declared safe to repeat; its first run is slow.
#[command(output = u32, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capture {
    pub cents: u32,
}

/// How long the slow handlers take: longer than the callers here wait.
pub const SLOW: Duration = Duration::from_millis(600);
/// How long the callers here wait for a reply.
pub const WAIT: Duration = Duration::from_millis(200);

pub mod orders {
    use super::*;

    #[handler]
    async fn commit(cmd: Commit, ctx: &Context, ledger: &Ledger) -> Result<u32, Busy> {
        ledger.commits.fetch_add(1, Ordering::SeqCst);
        let note = "n".repeat(cmd.note_bytes);
        ctx.publish(Committed { note }).map_err(|_| Busy)?;
        Ok(42)
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    async fn ship(cmd: Ship, ctx: &Context) -> Result<u64, Busy> {
        ctx.publish(Shipped { order: cmd.order })
            .map_err(|_| Busy)?;
        Ok(cmd.order)
    }
}

pub mod tracking {
    use super::*;

    #[handler]
    async fn shipped(_event: &Shipped, ledger: &Ledger) -> Result<(), Busy> {
        // A database write.
        tokio::time::sleep(Duration::from_millis(5)).await;
        ledger.shipped.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub mod mail {
    use super::*;

    #[handler]
    async fn committed(_event: &Committed, ledger: &Ledger) -> Result<(), Busy> {
        ledger.mails.fetch_add(1, Ordering::SeqCst);
        Err(Busy)
    }
}

pub mod bank {
    use super::*;

    #[handler]
    async fn charge(cmd: ChargeCard, ledger: &Ledger) -> Result<u32, Busy> {
        ledger.charges.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(SLOW).await;
        Ok(cmd.cents)
    }

    #[handler]
    async fn capture(cmd: Capture, ledger: &Ledger) -> Result<u32, Busy> {
        if ledger.captures.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::time::sleep(SLOW).await;
        }
        Ok(cmd.cents)
    }
}

fn is_orders(h: &HandlerMeta) -> bool {
    h.name.contains("::orders::")
}

fn is_mail(h: &HandlerMeta) -> bool {
    h.name.contains("::mail::")
}

fn is_bank(h: &HandlerMeta) -> bool {
    h.name.contains("::bank::")
}

fn is_shipping(h: &HandlerMeta) -> bool {
    h.name.contains("::shipping::")
}

fn is_tracking(h: &HandlerMeta) -> bool {
    h.name.contains("::tracking::")
}

/// A service on `transport` running the handlers `keep` accepts.
async fn serve(
    transport: impl Transport,
    ledger: &Arc<Ledger>,
    service: &str,
    keep: fn(&HandlerMeta) -> bool,
    letters: &MemoryDeadLetterStore,
) -> Serving {
    Catga::builder()
        .state_arc(ledger.clone())
        .transport(transport)
        .service(service)
        .handlers(keep)
        .dead_letters(letters.clone())
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap()
}

/// A caller with no handlers, behind `Retry` and `Timeout` as the reproducers had it: each
/// attempt waits at most `wait` (the deadline travels with the request).
fn caller(transport: impl Transport, wait: Duration) -> Catga<impl Layer> {
    Catga::builder()
        .transport(transport)
        .service("front")
        .handlers(|_| false)
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(20)))
        .layer(Timeout::new(wait))
        .build()
        .unwrap()
}

/// Waits until `done` holds: a bound against hanging, not a measurement.
pub async fn eventually<D: Future<Output = bool>>(what: &str, done: impl Fn() -> D) {
    let limit = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < limit,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `p03` / `nc_r03` across a transport: the caller gets `Ok(42)` each time and the command
/// runs once per send, even where the caller retries while `is_retryable()`; the mail
/// service, whose handler always fails, keeps each announcement once in its store after the
/// last delivery.
pub async fn follow_up_failures_elsewhere_leave_the_reply<T, F>(connect: impl Fn() -> F)
where
    T: Transport,
    F: Future<Output = T>,
{
    let ledger = Arc::new(Ledger::default());
    let order_letters = MemoryDeadLetterStore::new();
    let mail_letters = MemoryDeadLetterStore::new();
    let orders = serve(
        connect().await,
        &ledger,
        "orders",
        is_orders,
        &order_letters,
    )
    .await;
    let mail = serve(connect().await, &ledger, "mail", is_mail, &mail_letters).await;
    let front = caller(connect().await, Duration::from_secs(10));

    assert_eq!(front.send(Commit { note_bytes: 1 }).await.unwrap(), 42);
    for _ in 0..3 {
        match front.send(Commit { note_bytes: 1 }).await {
            Err(e) if e.is_retryable() => continue,
            other => {
                assert_eq!(other.unwrap(), 42);
                break;
            }
        }
    }
    assert_eq!(count(&ledger.commits), 2, "one run per send");
    eventually(
        "each announcement kept once by the mail service",
        || async { mail_letters.count().await.unwrap() == 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept = mail_letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|r| r.message == "Committed"), "{kept:?}");
    assert!(count(&ledger.mails) >= 2);
    assert_eq!(
        order_letters.count().await.unwrap(),
        0,
        "the publisher kept nothing"
    );
    orders.shutdown().await;
    mail.shutdown().await;
}

/// A follow-up the transport refuses (larger than it carries) is kept in the publishing
/// application's store, and the committed command still returns its reply.
pub async fn a_refused_follow_up_is_kept_by_its_publisher<T, F>(
    connect: impl Fn() -> F,
    too_large: usize,
) where
    T: Transport,
    F: Future<Output = T>,
{
    let ledger = Arc::new(Ledger::default());
    let order_letters = MemoryDeadLetterStore::new();
    let orders = serve(
        connect().await,
        &ledger,
        "orders",
        is_orders,
        &order_letters,
    )
    .await;
    let front = caller(connect().await, Duration::from_secs(10));
    let reply = front.send(Commit {
        note_bytes: too_large,
    });
    assert_eq!(reply.await.unwrap(), 42);
    assert_eq!(count(&ledger.commits), 1);
    eventually("the refused announcement kept by its publisher", || async {
        order_letters.count().await.unwrap() == 1
    })
    .await;
    let kept = order_letters.list(10).await.unwrap();
    assert_eq!(kept[0].message, "Committed", "{kept:?}");
    assert!(
        kept[0]
            .payload
            .as_ref()
            .is_some_and(|p| p.len() > too_large)
    );
    orders.shutdown().await;
}

/// `nc_r06` / `nc_r07` across a transport: the caller's request times out while the handler
/// runs. Not declared idempotent: in doubt, not sent again, run once. Declared idempotent:
/// sent again, and the repeat's reply is the caller's.
pub async fn a_remote_command_that_timed_out_runs_again_only_if_idempotent<T, F>(
    connect: impl Fn() -> F,
) where
    T: Transport,
    F: Future<Output = T>,
{
    let ledger = Arc::new(Ledger::default());
    let letters = MemoryDeadLetterStore::new();
    let bank = serve(connect().await, &ledger, "bank", is_bank, &letters).await;
    let front = caller(connect().await, WAIT);

    let err = front.send(ChargeCard { cents: 5 }).await.unwrap_err();
    assert!(err.is_in_doubt(), "{err}");
    assert!(
        err.is_retryable(),
        "a caller that knows better may retry: {err}"
    );
    tokio::time::sleep(SLOW * 2).await;
    assert_eq!(count(&ledger.charges), 1, "charged once, not three times");

    assert_eq!(front.send(Capture { cents: 7 }).await.unwrap(), 7);
    assert_eq!(
        count(&ledger.captures),
        2,
        "declared idempotent: sent again"
    );
    let kept = letters.list(10).await.unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    bank.shutdown().await;
}

/// A request sent before its service runs is handled once when the service starts: retried
/// where nothing could take it (nothing ran), or waiting where the transport keeps it.
pub async fn a_request_sent_before_its_service_runs_is_handled_once<T, F>(connect: impl Fn() -> F)
where
    T: Transport,
    F: Future<Output = T>,
{
    let ledger = Arc::new(Ledger::default());
    let letters = MemoryDeadLetterStore::new();
    let front = Catga::builder()
        .transport(connect().await)
        .service("front")
        .handlers(|_| false)
        .layer(Retry::exponential(6).base_delay(Duration::from_millis(100)))
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let late = connect().await;
    let starting = {
        let ledger = ledger.clone();
        let letters = letters.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            serve(late, &ledger, "bank", is_bank, &letters).await
        })
    };
    let sent = tokio::time::Instant::now();
    let reply = front.send(ChargeCard { cents: 9 }).await;
    let bank = starting.await.unwrap();
    assert_eq!(reply.unwrap(), 9, "after {:?}", sent.elapsed());
    tokio::time::sleep(SLOW).await;
    assert_eq!(count(&ledger.charges), 1, "handled once");
    let kept = letters.list(10).await.unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    bank.shutdown().await;
}

/// `rel_r4` across a transport that keeps events for a service that is down: events
/// published under a deadline, and events a remote command queued with `ctx.publish` while
/// its caller's timeout ran, are all handled after an outage longer than that deadline; none
/// is acknowledged unhandled or set aside.
pub async fn events_outlive_their_publishers_deadline<T, F>(connect: impl Fn() -> F)
where
    T: Transport,
    F: Future<Output = T>,
{
    const DEADLINE: Duration = Duration::from_secs(1);
    let ledger = Arc::new(Ledger::default());
    let letters = MemoryDeadLetterStore::new();
    let tracking = Catga::builder()
        .state_arc(ledger.clone())
        .transport(connect().await)
        .service("tracking")
        .handlers(is_tracking)
        .layer(DeadLetter::new(letters.clone()))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    // The durable consumer exists; then the service is down (a deploy).
    tracking.serve().await.unwrap().shutdown().await;

    let shipping = Catga::builder()
        .transport(connect().await)
        .service("shipping")
        .handlers(is_shipping)
        .build()
        .unwrap();
    let shipping_serving = shipping.serve().await.unwrap();
    let front = caller(connect().await, DEADLINE);
    for order in 0..20 {
        let ctx = Context::new().with_timeout(DEADLINE);
        shipping.publish_with(Shipped { order }, ctx).await.unwrap();
    }
    for order in 20..40 {
        assert_eq!(front.send(Ship { order }).await.unwrap(), order);
    }
    // The outage outlasts every deadline.
    tokio::time::sleep(DEADLINE * 2).await;
    let serving = tracking.serve().await.unwrap();
    eventually("all 40 events handled", || async {
        count(&ledger.shipped) >= 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&ledger.shipped), 40, "handled 40/40");
    assert_eq!(letters.count().await.unwrap(), 0, "none set aside");
    serving.shutdown().await;
    shipping_serving.shutdown().await;
}
