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

#[test]
fn the_breaker_reports_transitions_and_rejections_as_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let service = Arc::new(Service::default());
            let (app, _) = breaker_app(&service, CircuitBreaker::new(Trip::ConsecutiveFailures(1)));
            app.send(Call { fail: true }).await.unwrap_err();
            app.send(Call { fail: false }).await.unwrap_err();
            app.send(Call { fail: false }).await.unwrap_err();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str| {
        snapshot
            .iter()
            .find(|(key, ..)| key.key().name() == name)
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
    };
    assert_eq!(counter("catga_circuit_breaker_transitions_total"), Some(1));
    assert_eq!(counter("catga_circuit_breaker_rejections_total"), Some(2));
}

/// What the model expects a call to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Refused,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Succeed,
    Fail,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Succeed),
        3 => Just(Op::Fail),
        1 => (1u64..3_000).prop_map(Op::Wait),
    ]
}

/// The breaker as a textbook state machine (one probe, calls one at a time).
struct Model {
    threshold: u32,
    cool_down: u64,
    now: u64,
    state: ModelState,
}

enum ModelState {
    Closed(u32),
    Open(u64),
}

impl Model {
    fn call(&mut self, fail: bool) -> Outcome {
        let probing = match self.state {
            ModelState::Closed(_) => false,
            ModelState::Open(since) if self.now < since + self.cool_down => {
                return Outcome::Refused;
            }
            ModelState::Open(_) => true,
        };
        self.state = match (probing, &self.state, fail) {
            (true, _, true) => ModelState::Open(self.now),
            (true, _, false) | (false, _, false) => ModelState::Closed(0),
            (false, ModelState::Closed(n), true) if n + 1 >= self.threshold => {
                ModelState::Open(self.now)
            }
            (false, ModelState::Closed(n), true) => ModelState::Closed(n + 1),
            (false, ModelState::Open(_), _) => unreachable!("an open circuit refused above"),
        };
        if fail { Outcome::Failed } else { Outcome::Ok }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_breaker_behaves_like_its_state_machine(
        threshold in 1u32..5,
        cool_down in 1u64..2_000,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let service = Arc::new(Service::default());
            let app = Catga::builder()
                .state_arc(service)
                .layer(CircuitBreaker::new(Trip::ConsecutiveFailures(threshold)).cool_down(Duration::from_millis(cool_down)))
                .build()
                .unwrap();
            let mut model = Model { threshold, cool_down, now: 0, state: ModelState::Closed(0) };
            for (step, op) in ops.iter().enumerate() {
                let (fail, expected) = match *op {
                    Op::Wait(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now += ms;
                        continue;
                    }
                    Op::Succeed => (false, model.call(false)),
                    Op::Fail => (true, model.call(true)),
                };
                let actual = match app.send(Call { fail }).await {
                    Ok(_) => Outcome::Ok,
                    Err(e) if e.code() == "circuit_open" => Outcome::Refused,
                    Err(_) => Outcome::Failed,
                };
                prop_assert_eq!(actual, expected, "step {} of {:?}", step, ops);
            }
            Ok(())
        })?;
    }
}

// ---- rate limit ----

#[tokio::test(start_paused = true)]
async fn a_global_rate_limit_fails_fast_beyond_its_burst() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service)
        .layer(RateLimit::global(Rate::per_second(10)).burst(3))
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(code(&app.send(Call { fail: false }).await), "ok");
    }
    let err = app.send(Call { fail: false }).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::RateLimited { retry_after, .. } if *retry_after == Duration::from_millis(100))
    );
    assert!(!err.is_retryable());
    // The budget is global: another message shares it.
    assert_eq!(code(&app.send(Reject).await), "rate_limited");
    // One permit frees up every 100 ms.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(code(&app.send(Call { fail: false }).await), "ok");
    assert_eq!(code(&app.send(Call { fail: false }).await), "rate_limited");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_rate_limit_spaces_calls_out_and_respects_the_deadline() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service)
        .layer(
            RateLimit::per_message(Rate::per_second(10))
                .burst(1)
                .wait_up_to(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        app.send(Call { fail: false }).await.unwrap();
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(400),
        "5 calls 100 ms apart"
    );
    // Per message: another message has its own budget and goes at once.
    let before = Instant::now();
    app.send(Reject).await.unwrap_err();
    assert_eq!(before.elapsed(), Duration::ZERO);
    // A deadline shorter than the wait fails fast instead of waiting past it.
    app.send(Call { fail: false }).await.unwrap(); // takes the next slot (waits 100 ms)
    let ctx = Context::new().with_timeout(Duration::from_millis(50));
    let before = Instant::now();
    let err = app.send_with(Call { fail: false }, ctx).await.unwrap_err();
    assert_eq!(err.code(), "rate_limited");
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_message_declared_rate_applies_with_a_declared_only_limiter() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service)
        .layer(RateLimit::declared())
        .build()
        .unwrap();
    // `Limited` declares 2/s (burst 2); `Call` declares nothing and is not limited.
    for _ in 0..20 {
        app.send(Call { fail: false }).await.unwrap();
    }
    app.send(Limited).await.unwrap();
    app.send(Limited).await.unwrap();
    assert_eq!(code(&app.send(Limited).await), "rate_limited");
}

// ---- concurrency limit ----

#[tokio::test(start_paused = true)]
async fn the_bulkhead_caps_in_flight_queues_and_sheds_the_rest() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service.clone())
        .layer(ConcurrencyLimit::per_message(2).queue(2))
        .build()
        .unwrap();
    let calls: Vec<_> = (0..6).map(|_| app.send(Slow { millis: 100 })).collect();
    let started = Instant::now();
    let results = futures::future::join_all(calls).await;
    let mut codes: Vec<&str> = results.iter().map(code).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["ok", "ok", "ok", "ok", "overloaded", "overloaded"]);
    assert_eq!(service.most_running.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "two waves of two"
    );
    let shed = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(
        shed.kind(),
        ErrorKind::Overloaded {
            in_flight: 2,
            queue: 2,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_queued_dispatch_gives_up_at_its_deadline_and_leaves_the_queue() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service.clone())
        .layer(ConcurrencyLimit::shared(1).queue(1))
        .build()
        .unwrap();
    let first = app.send(Slow { millis: 1_000 });
    let second = app.send_with(
        Slow { millis: 1 },
        Context::new().with_timeout(Duration::from_millis(100)),
    );
    let (first, second) = tokio::join!(first, second);
    assert_eq!(code(&first), "ok");
    assert_eq!(code(&second), "timeout");
    // The queue slot was given back: one more can queue behind a running one.
    let (a, b) = tokio::join!(app.send(Slow { millis: 10 }), app.send(Slow { millis: 10 }));
    assert_eq!((code(&a), code(&b)), ("ok", "ok"));
}

#[tokio::test(start_paused = true)]
async fn a_message_declared_concurrency_gets_its_own_limit() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service.clone())
        .layer(ConcurrencyLimit::shared(100))
        .build()
        .unwrap();
    // `Limited` declares `concurrency = 1` and no queue.
    let (a, b) = tokio::join!(app.send(Limited), app.send(Limited));
    let mut codes = [code(&a), code(&b)];
    codes.sort_unstable();
    assert_eq!(codes, ["ok", "overloaded"]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let service = Arc::new(Service::default());
    let (app, breaker) = breaker_app(
        &service,
        CircuitBreaker::new(Trip::ConsecutiveFailures(1)).cool_down(Duration::from_secs(1)),
    );
    app.send(SlowCall { fail: true }).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe is dropped at its deadline, before it finishes: that is a timeout, which
    // counts as a failure and re-opens the circuit.
    let ctx = Context::new().with_timeout(Duration::from_millis(1));
    assert_eq!(
        code(&app.send_with(SlowCall { fail: false }, ctx).await),
        "timeout"
    );
    assert_eq!(breaker.state::<SlowCall>(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    // Its slot is free again: the next call is the probe, and closes the circuit.
    assert_eq!(code(&app.send(SlowCall { fail: false }).await), "ok");
    assert_eq!(breaker.state::<SlowCall>(), CircuitState::Closed);
}

/// Two messages sharing the `database` group.
#[command(bulkhead = "database")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaveOrder;

#[command(bulkhead = "database")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaveCustomer;

#[handler]
async fn save_order(_cmd: SaveOrder) -> Result<(), Failure> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[handler]
async fn save_customer(_cmd: SaveCustomer) -> Result<(), Failure> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn messages_of_one_bulkhead_group_share_its_slots() {
    let service = Arc::new(Service::default());
    let app = Catga::builder()
        .state_arc(service)
        .layer(ConcurrencyLimit::per_message(10).group("database", 1))
        .build()
        .unwrap();
    // Different messages, one group of one slot: the second is shed.
    let (a, b) = tokio::join!(app.send(SaveOrder), app.send(SaveCustomer));
    let mut codes = [code(&a), code(&b)];
    codes.sort_unstable();
    assert_eq!(codes, ["ok", "overloaded"]);
    // Messages outside the group keep their own per-message limit of 10.
    let (c, d) = tokio::join!(app.send(Slow { millis: 10 }), app.send(Slow { millis: 10 }));
    assert_eq!((code(&c), code(&d)), ("ok", "ok"));
}
