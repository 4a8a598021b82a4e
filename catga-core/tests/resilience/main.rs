//! Circuit breaker, rate limit and concurrency limit, through the public API, on Tokio's
//! paused clock. Includes a property test of the breaker against a model state machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::behavior::{CircuitBreaker, CircuitState, ConcurrencyLimit, RateLimit, Trip};
use catga_core::policy::Rate;
use catga_core::prelude::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use proptest::prelude::*;
use tokio::time::Instant;

/// Succeeds or fails (with a retryable error) as told.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub fail: bool,
}

/// Like `Call`, but takes 10 ms, so calls overlap.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlowCall {
    pub fail: bool,
}

/// Fails with an error that is not retryable: a business rejection.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reject;

/// Exempt from the breaker.
#[command(skip(circuit_breaker))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exempt;

/// Sleeps, counting how many run at once.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub millis: u64,
}

/// Has its own rate and concurrency limits.
#[command(rate_limit = "2/s", concurrency = 1)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limited;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("dependency down")]
    Down,
    #[error("rejected")]
    Rejected,
}

impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        matches!(self, Failure::Down)
    }
}

#[derive(Default)]
pub struct Service {
    calls: AtomicU32,
    running: AtomicU32,
    most_running: AtomicU32,
}

#[handler]
impl Service {
    async fn call(&self, cmd: Call) -> Result<u32, Failure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if cmd.fail { Err(Failure::Down) } else { Ok(n) }
    }

    async fn slow_call(&self, cmd: SlowCall) -> Result<u32, Failure> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.call(Call { fail: cmd.fail }).await
    }

    async fn reject(&self, _cmd: Reject) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Rejected)
    }

    async fn exempt(&self, _cmd: Exempt) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Failure::Down)
    }

    async fn slow(&self, cmd: Slow) -> Result<(), Failure> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn limited(&self, _cmd: Limited) -> Result<(), Failure> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    }
}

fn code<T>(result: &Result<T, Error>) -> &str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

// ---- circuit breaker ----

fn breaker_app(
    service: &Arc<Service>,
    breaker: CircuitBreaker,
) -> (Catga<impl catga_core::Layer>, Arc<CircuitBreaker>) {
    // The breaker is shared with the test so it can read circuit states.
    let breaker = Arc::new(breaker);
    let app = Catga::builder()
        .state_arc(service.clone())
        .layer(SharedBreaker(breaker.clone()))
        .build()
        .unwrap();
    (app, breaker)
}

/// Lets a test keep a handle on the breaker inside the app.
struct SharedBreaker(Arc<CircuitBreaker>);

impl Behavior for SharedBreaker {
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl std::future::Future<Output = Result<P::Output, Error>> + Send {
        self.0.handle(msg, ctx, next)
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_circuit_then_a_probe_closes_it() {
    let service = Arc::new(Service::default());
    let (app, breaker) = breaker_app(
        &service,
        CircuitBreaker::new(Trip::ConsecutiveFailures(3)).cool_down(Duration::from_secs(10)),
    );
    for _ in 0..3 {
        assert_eq!(code(&app.send(Call { fail: true }).await), "handler");
    }
    assert_eq!(breaker.state::<Call>(), CircuitState::Open);
    let calls = service.calls.load(Ordering::SeqCst);
    let err = app.send(Call { fail: false }).await.unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::CircuitOpen { message: "Call", retry_after } if *retry_after == Duration::from_secs(10)
    ));
    assert!(!err.is_retryable());
    assert_eq!(
        service.calls.load(Ordering::SeqCst),
        calls,
        "refused without running"
    );

    tokio::time::advance(Duration::from_secs(4)).await;
    let err = app.send(Call { fail: false }).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::CircuitOpen { retry_after, .. } if *retry_after == Duration::from_secs(6))
    );

    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        code(&app.send(Call { fail: false }).await),
        "ok",
        "the probe runs"
    );
    assert_eq!(breaker.state::<Call>(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_the_circuit() {
    let service = Arc::new(Service::default());
    let (app, breaker) = breaker_app(
        &service,
        CircuitBreaker::new(Trip::ConsecutiveFailures(1)).cool_down(Duration::from_secs(1)),
    );
    app.send(Call { fail: true }).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        code(&app.send(Call { fail: true }).await),
        "handler",
        "the probe ran and failed"
    );
    assert_eq!(breaker.state::<Call>(), CircuitState::Open);
    assert_eq!(code(&app.send(Call { fail: false }).await), "circuit_open");
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_only_the_configured_probes_through() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service.clone())
        .layer(
            CircuitBreaker::new(Trip::ConsecutiveFailures(1))
                .cool_down(Duration::from_secs(1))
                .probes(2),
        )
        .build()
        .unwrap();
    // Trip the circuit, then let the cool-down pass.
    app.send(SlowCall { fail: true }).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    // Three overlapping calls in half-open: two probes run, the third is refused.
    let (a, b, c) = tokio::join!(
        app.send(SlowCall { fail: false }),
        app.send(SlowCall { fail: false }),
        app.send(SlowCall { fail: false })
    );
    let mut codes = [code(&a), code(&b), code(&c)];
    codes.sort_unstable();
    assert_eq!(codes, ["circuit_open", "ok", "ok"]);
    assert_eq!(
        code(&app.send(SlowCall { fail: false }).await),
        "ok",
        "two good probes closed it"
    );
}

#[tokio::test(start_paused = true)]
async fn business_rejections_and_exempt_messages_do_not_trip_it() {
    let service = Arc::new(Service::default());
    let (app, breaker) = breaker_app(&service, CircuitBreaker::new(Trip::ConsecutiveFailures(2)));
    for _ in 0..5 {
        assert_eq!(code(&app.send(Reject).await), "handler");
        assert_eq!(code(&app.send(Exempt).await), "handler");
    }
    assert_eq!(breaker.state::<Reject>(), CircuitState::Closed);
    assert_eq!(breaker.state::<Exempt>(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failure_ratio_trips_after_a_full_window() {
    let service = Arc::new(Service::default());
    let (app, breaker) = breaker_app(
        &service,
        CircuitBreaker::new(Trip::FailureRatio {
            ratio: 0.5,
            window: 10,
            min_calls: 10,
        }),
    );
    // 4 failures in 10: under the ratio.
    for i in 0..10 {
        let _ = app.send(Call { fail: i % 5 < 2 }).await;
    }
    assert_eq!(breaker.state::<Call>(), CircuitState::Closed);
    // 5 failures in the next 10: at the ratio.
    for i in 0..10 {
        let _ = app.send(Call { fail: i % 2 == 0 }).await;
    }
    assert_eq!(breaker.state::<Call>(), CircuitState::Open);
}

mod limits;
