//! `resilience` tests, continued: breaker metrics, rate limits and bulkheads (helpers live in
//! `main.rs`).

use super::*;

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
