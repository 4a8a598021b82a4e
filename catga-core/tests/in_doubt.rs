//! `idempotent` means something at run time: an operation that may already have taken effect
//! (a timeout while its handler ran, a lost reply) is retried only when the message is safe
//! to repeat. Errors known to have happened before the handler ran stay retryable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::{Retry, Timeout};
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::transport::{
    Inbound, MemoryTransport, Reply, ServePlan, Serving, Transport, TransportError,
};
use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
#[error("declined")]
pub struct Declined(bool);

impl Retryable for Declined {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

/// How often each handler started.
#[derive(Default)]
pub struct Started {
    charge: AtomicU32,
    capture: AtomicU32,
    balance: AtomicU32,
    flaky: AtomicU32,
}

fn get(n: &AtomicU32) -> u32 {
    n.load(Ordering::SeqCst)
}

/// Not declared idempotent: charging twice charges twice.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeCard {
    pub cents: u32,
}

/// Declared safe to repeat (the handler checks whether it already captured).
#[command(output = u32, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capture {
    pub cents: u32,
}

#[query(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance;

/// Fails retryably on its first run: the handler says retrying is safe.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky;

pub mod bank {
    use super::*;

    /// The card is charged at once; the reply is slow.
    #[handler]
    async fn charge(cmd: ChargeCard, started: &Started) -> Result<u32, Declined> {
        started.charge.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(cmd.cents)
    }

    #[handler]
    async fn capture(cmd: Capture, started: &Started) -> Result<u32, Declined> {
        started.capture.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(cmd.cents)
    }

    #[handler]
    async fn balance(_q: Balance, started: &Started) -> Result<u32, Declined> {
        started.balance.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(0)
    }

    #[handler]
    async fn flaky(_cmd: Flaky, started: &Started) -> Result<u32, Declined> {
        let n = started.flaky.fetch_add(1, Ordering::SeqCst);
        if n == 0 { Err(Declined(true)) } else { Ok(n) }
    }
}

fn bank(started: Arc<Started>) -> Catga<impl catga_core::pipeline::Layer> {
    Catga::builder()
        .state_arc(started)
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(1)))
        .layer(Timeout::new(Duration::from_millis(100)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_command_that_timed_out_is_not_run_again_unless_idempotent() {
    let started = Arc::new(Started::default());
    let app = bank(started.clone());
    let err = app.send(ChargeCard { cents: 500 }).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(err.is_retryable() && err.is_in_doubt());
    assert_eq!(get(&started.charge), 1, "charged once, not three times");

    let err = app.send(Capture { cents: 500 }).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert_eq!(get(&started.capture), 3, "declared idempotent: retried");

    let err = app.send(Balance).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert_eq!(get(&started.balance), 3, "a query changes nothing: retried");
}

#[tokio::test(start_paused = true)]
async fn a_handlers_own_retryable_error_is_retried_for_any_command() {
    let started = Arc::new(Started::default());
    let app = bank(started.clone());
    assert_eq!(app.send(Flaky).await.unwrap(), 1);
    assert_eq!(get(&started.flaky), 2);
}

/// A transport where nobody serves requests for the first `absent` attempts, then the
/// in-memory bus.
#[derive(Clone)]
struct LateService {
    absent: Arc<AtomicU32>,
    bus: MemoryTransport,
}

impl Transport for LateService {
    fn name(&self) -> &'static str {
        "late"
    }
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        self.bus.publish(envelope)
    }
    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        if self
            .absent
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let name = envelope.name.into_owned();
            return Box::pin(async move { Err(TransportError::NoResponders(name)) });
        }
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

#[tokio::test(start_paused = true)]
async fn a_request_that_never_reached_a_handler_is_retried_even_if_not_idempotent() {
    let started = Arc::new(Started::default());
    let bus = MemoryTransport::new();
    let server = Catga::builder()
        .state_arc(started.clone())
        .transport(bus.clone())
        .service("bank")
        .build()
        .unwrap();
    let serving = server.serve().await.unwrap();
    let client = Catga::builder()
        .transport(LateService {
            absent: Arc::new(AtomicU32::new(1)),
            bus: bus.clone(),
        })
        .service("shop")
        .handlers(|_| false)
        .layer(Retry::exponential(3).base_delay(Duration::from_millis(1)))
        .build()
        .unwrap();
    // `NoResponders`: nothing was handled, so a retry cannot charge twice.
    assert_eq!(client.send(ChargeCard { cents: 7 }).await.unwrap(), 7);
    assert_eq!(get(&started.charge), 1);

    // A remote timeout: the handler may have run, so it is not retried.
    let ctx = Context::new().with_timeout(Duration::from_millis(50));
    let err = client
        .send_with(ChargeCard { cents: 8 }, ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(err.is_in_doubt());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get(&started.charge), 2, "started once for this call");
    serving.shutdown().await;
}

#[test]
fn in_doubt_is_what_may_have_run() {
    use catga_core::ErrorKind;
    let timeout: Error = ErrorKind::Timeout {
        message: "X",
        after: None,
    }
    .into();
    assert!(timeout.is_in_doubt());
    let nobody: Error = ErrorKind::Transport {
        message: "X".into(),
        transport: "nats",
        source: TransportError::NoResponders("X".into()),
    }
    .into();
    assert!(nobody.is_retryable() && !nobody.is_in_doubt());
    let unreachable: Error = ErrorKind::Transport {
        message: "X".into(),
        transport: "nats",
        source: TransportError::Unreachable("refused".into()),
    }
    .into();
    assert!(!unreachable.is_in_doubt(), "nothing was sent");
    let lost: Error = ErrorKind::Transport {
        message: "X".into(),
        transport: "nats",
        source: TransportError::Timeout(Duration::from_secs(1)),
    }
    .into();
    assert!(lost.is_in_doubt());
    let handler = Error::from_handler("X", "h", Declined(true));
    assert!(!handler.is_in_doubt(), "the handler chose to fail");
}
