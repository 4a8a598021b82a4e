//! The built-in behaviours and the context's deadline and cancellation, through the public API.
//! Every timing test runs on Tokio's paused clock: no real sleeps, exact virtual durations.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::{CancellationToken, ErrorKind};
use tokio::time::Instant;

// ---- messages and handlers ----

/// Fails with a retryable error until `succeed_on`, recording each attempt number it saw.
#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky {
    pub succeed_on: u32,
}

/// Always fails with an error that says retrying will not help.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doomed;

/// Retryable failure, but the message opts out of retries.
#[command(retry = 1, name = "no_retry")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoRetry;

/// Retryable failure, but not `Clone`: a retry has no fresh copy to hand the handler.
#[command]
#[derive(Debug, Serialize, Deserialize)]
pub struct NotClone;

/// Sleeps for `millis` of (virtual) time, then replies with the deadline it saw.
#[command(output = Option<Duration>, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub millis: u64,
}

/// Like `Slow`, but with its own limit for the `Timeout` behaviour.
#[command(output = (), timeout = "50ms")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hasty {
    pub millis: u64,
}

#[command(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    pub email: String,
    pub age: u8,
}

impl Validate for Register {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if !self.email.contains('@') {
            errors.add("email", "must contain `@`");
        }
        if self.age < 18 {
            errors.add("age", "must be at least 18");
        }
        errors.into_result()
    }
}

/// Has no `Validate` implementation: the validation behaviour lets it through.
#[query(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unchecked;

/// Queues an event on every attempt; the first attempt fails.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnounceTwice;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announced {
    pub attempt: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable")]
    Unavailable,
    #[error("constraint violated")]
    Constraint,
}

impl Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable)
    }
}

/// What the handlers observed.
#[derive(Default)]
pub struct Journal {
    attempts: Mutex<Vec<u32>>,
    registered: AtomicU32,
    announced: Mutex<Vec<u32>>,
}

impl Journal {
    fn attempts(&self) -> Vec<u32> {
        self.attempts.lock().unwrap().clone()
    }
}

#[handler(allow(unwrap_in_handler))]
impl Journal {
    async fn flaky(&self, cmd: Flaky, ctx: &Context) -> Result<u32, StoreError> {
        self.attempts.lock().unwrap().push(ctx.attempt());
        if ctx.attempt() < cmd.succeed_on {
            Err(StoreError::Unavailable)
        } else {
            Ok(ctx.attempt())
        }
    }

    async fn doomed(&self, _cmd: Doomed, ctx: &Context) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(ctx.attempt());
        Err(StoreError::Constraint)
    }

    async fn no_retry(&self, _cmd: NoRetry, ctx: &Context) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(ctx.attempt());
        Err(StoreError::Unavailable)
    }

    async fn not_clone(&self, _cmd: NotClone, ctx: &Context) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(ctx.attempt());
        Err(StoreError::Unavailable)
    }

    async fn register(&self, cmd: Register) -> Result<String, StoreError> {
        self.registered.fetch_add(1, Ordering::SeqCst);
        Ok(cmd.email)
    }

    async fn unchecked(&self, _q: Unchecked) -> Result<u32, StoreError> {
        Ok(7)
    }

    async fn announce(&self, _cmd: AnnounceTwice, ctx: &Context) -> Result<(), StoreError> {
        ctx.publish(Announced {
            attempt: ctx.attempt(),
        })
        .map_err(|_| StoreError::Unavailable)?;
        if ctx.attempt() == 1 {
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    async fn announced(&self, event: &Announced) -> Result<(), StoreError> {
        self.announced.lock().unwrap().push(event.attempt);
        Ok(())
    }
}

#[handler]
async fn slow(cmd: Slow, ctx: &Context) -> Result<Option<Duration>, StoreError> {
    let seen = ctx.remaining();
    tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
    Ok(seen)
}

#[handler]
async fn hasty(cmd: Hasty) -> Result<(), StoreError> {
    tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
    Ok(())
}

fn retrying(journal: &std::sync::Arc<Journal>) -> Catga<impl catga_core::Layer> {
    Catga::builder()
        .state_arc(journal.clone())
        .layer(
            Retry::exponential(4)
                .base_delay(Duration::from_millis(100))
                .without_jitter(),
        )
        .build()
        .unwrap()
}

// ---- retry ----

#[tokio::test(start_paused = true)]
async fn retry_backs_off_exponentially_and_counts_attempts() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    let started = Instant::now();
    let attempt = app.send(Flaky { succeed_on: 3 }).await.unwrap();
    assert_eq!(attempt, 3, "the handler saw its attempt number");
    assert_eq!(journal.attempts(), vec![1, 2, 3]);
    // Two retries: 100 ms, then 200 ms, on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_the_last_attempt_with_the_last_error() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    let started = Instant::now();
    let err = app.send(Flaky { succeed_on: 99 }).await.unwrap_err();
    assert_eq!(journal.attempts(), vec![1, 2, 3, 4]);
    assert_eq!(started.elapsed(), Duration::from_millis(100 + 200 + 400));
    assert!(err.is_retryable());
    assert!(matches!(
        err.downcast_ref::<StoreError>(),
        Some(StoreError::Unavailable)
    ));
}

#[tokio::test(start_paused = true)]
async fn retry_leaves_non_retryable_errors_alone() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    let started = Instant::now();
    let err = app.send(Doomed).await.unwrap_err();
    assert_eq!(journal.attempts(), vec![1]);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.code(), "handler");
    assert!(!err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_message_can_opt_out_of_retries() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    app.send(NoRetry).await.unwrap_err();
    assert_eq!(journal.attempts(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_message_that_is_not_clone_gets_one_attempt() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    let err = app.send(NotClone).await.unwrap_err();
    assert_eq!(journal.attempts(), vec![1]);
    assert!(err.is_retryable(), "the error is still reported as it is");
}

#[tokio::test(start_paused = true)]
async fn retry_never_sleeps_past_the_deadline() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    let started = Instant::now();
    // After attempt 1 (t=0) it sleeps 100 ms; after attempt 2 the next delay (200 ms) would end
    // past the 250 ms deadline, so the last error comes back at once.
    let ctx = Context::new().with_timeout(Duration::from_millis(250));
    let err = app
        .send_with(Flaky { succeed_on: 99 }, ctx)
        .await
        .unwrap_err();
    assert_eq!(journal.attempts(), vec![1, 2]);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(err.code(), "handler");
}

#[tokio::test(start_paused = true)]
async fn events_queued_by_a_failed_attempt_are_not_published() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = retrying(&journal);
    app.send(AnnounceTwice).await.unwrap();
    assert_eq!(*journal.announced.lock().unwrap(), vec![2]);
}

#[test]
fn jittered_delays_stay_between_half_and_the_full_backoff() {
    let retry = Retry::exponential(8).base_delay(Duration::from_millis(100));
    for attempt in 1..=5 {
        let full = Duration::from_millis(100) * 2u32.pow(attempt - 1);
        let delays: Vec<Duration> = (0..64).map(|_| retry.delay_after(attempt)).collect();
        assert!(delays.iter().all(|d| *d >= full / 2 && *d <= full));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "jitter spreads the delays of attempt {attempt}"
        );
    }
}

// ---- timeout, deadline, cancellation ----

#[tokio::test(start_paused = true)]
async fn timeout_fails_a_slow_handler_and_reports_the_limit() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder()
        .state_arc(journal)
        .layer(Timeout::new(Duration::from_secs(1)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = app.send(Slow { millis: 10_000 }).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(err.code(), "timeout");
    assert!(err.is_retryable());
    assert!(matches!(
        err.kind(),
        ErrorKind::Timeout {
            message: "Slow",
            after: Some(d)
        } if *d == Duration::from_secs(1)
    ));

    // A fast handler sees the deadline the behaviour set, and succeeds.
    let seen = app.send(Slow { millis: 10 }).await.unwrap();
    assert_eq!(seen, Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_message_attribute_overrides_the_timeout() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder()
        .state_arc(journal)
        .layer(Timeout::new(Duration::from_secs(5)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = app.send(Hasty { millis: 1_000 }).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    app.send(Hasty { millis: 10 }).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn timeout_and_retry_compose_in_the_order_added() {
    let journal = std::sync::Arc::new(Journal::default());
    // Retry outside, timeout inside: each attempt gets its own 100 ms.
    let app = Catga::builder()
        .state_arc(journal)
        .layer(
            Retry::exponential(3)
                .base_delay(Duration::from_millis(10))
                .without_jitter(),
        )
        .layer(Timeout::new(Duration::from_millis(100)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = app.send(Slow { millis: 1_000 }).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    // Three attempts of 100 ms, with 10 ms and 20 ms between them.
    assert_eq!(started.elapsed(), Duration::from_millis(330));
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_holds_without_a_timeout_behavior() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder().state_arc(journal).build().unwrap();
    let started = Instant::now();
    let ctx = Context::new().with_timeout(Duration::from_millis(300));
    let err = app
        .send_with(Slow { millis: 5_000 }, ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_token_stops_the_dispatch() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder().state_arc(journal).build().unwrap();
    let token = CancellationToken::new();
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let ctx = Context::new().with_cancellation(token);
    let err = app
        .send_with(Slow { millis: 5_000 }, ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert!(!err.is_retryable());
    assert_eq!(started.elapsed(), Duration::from_millis(40));
}

// ---- validation ----

#[tokio::test]
async fn validation_reports_every_field_and_skips_the_handler() {
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder()
        .state_arc(journal.clone())
        .layer(Validation)
        .build()
        .unwrap();
    let err = app
        .send(Register {
            email: "nobody".into(),
            age: 12,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation");
    assert!(!err.is_retryable());
    let fields: Vec<&str> = err
        .validation_errors()
        .unwrap()
        .errors()
        .iter()
        .map(|e| e.field.as_ref())
        .collect();
    assert_eq!(fields, vec!["email", "age"]);
    assert_eq!(journal.registered.load(Ordering::SeqCst), 0);

    let ok = app
        .send(Register {
            email: "ada@example.com".into(),
            age: 36,
        })
        .await
        .unwrap();
    assert_eq!(ok, "ada@example.com");
    assert_eq!(journal.registered.load(Ordering::SeqCst), 1);
    assert_eq!(app.send(Unchecked).await.unwrap(), 7);
}

// ---- tracing ----

mod tracing_capture {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    /// One span's fields, as recorded (a later record of the same field comes later).
    pub type Recorded = Vec<(String, String)>;

    /// Every `catga.dispatch` span's fields, in order of creation.
    #[derive(Clone, Default)]
    pub struct Spans(pub Arc<Mutex<Vec<Recorded>>>);

    struct Fields<'a>(&'a mut Recorded);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .push((field.name().to_string(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_string(), value.to_string()));
        }
    }

    struct Index(usize);

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != "catga.dispatch" {
                return;
            }
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            let mut all = self.0.lock().unwrap();
            all.push(fields);
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Index(all.len() - 1));
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let Some(index) = span.extensions().get::<Index>().map(|i| i.0) else {
                return;
            };
            let mut all = self.0.lock().unwrap();
            values.record(&mut Fields(&mut all[index]));
        }
    }
}

#[test]
fn tracing_opens_a_span_per_dispatch_with_ids_and_outcome() {
    use tracing_subscriber::layer::SubscriberExt;

    let spans = tracing_capture::Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let journal = std::sync::Arc::new(Journal::default());
    let app = Catga::builder()
        .state_arc(journal)
        .layer(Tracing)
        .layer(Validation)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let correlation = uuid::Uuid::now_v7();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let ctx = Context::new().with_correlation_id(correlation);
            app.send_with(Unchecked, ctx).await.unwrap();
            app.send(Register {
                email: "x".into(),
                age: 1,
            })
            .await
            .unwrap_err();
        })
    });
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let field = |span: &tracing_capture::Recorded, name: &str| {
        span.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        field(&spans[0], "messaging.destination.name").as_deref(),
        Some("Unchecked")
    );
    assert_eq!(
        field(&spans[0], "catga.message.kind").as_deref(),
        Some("query")
    );
    assert_eq!(field(&spans[0], "catga.outcome").as_deref(), Some("ok"));
    assert_eq!(field(&spans[0], "catga.attempt").as_deref(), Some("1"));
    assert_eq!(
        field(&spans[0], "messaging.message.conversation_id"),
        Some(correlation.to_string())
    );
    let message_id = field(&spans[0], "messaging.message.id").unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&message_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(
        field(&spans[1], "messaging.destination.name").as_deref(),
        Some("Register")
    );
    assert_eq!(
        field(&spans[1], "catga.message.kind").as_deref(),
        Some("command")
    );
    assert_eq!(
        field(&spans[1], "catga.outcome").as_deref(),
        Some("validation")
    );
    // OpenTelemetry's name, kind and status, read by tracing-opentelemetry.
    assert_eq!(
        field(&spans[0], "otel.name").as_deref(),
        Some("dispatch Unchecked")
    );
    assert_eq!(field(&spans[0], "otel.kind").as_deref(), Some("internal"));
    assert_eq!(
        field(&spans[0], "messaging.system").as_deref(),
        Some("catga")
    );
    assert_eq!(field(&spans[0], "error.type"), None);
    assert_eq!(
        field(&spans[1], "error.type").as_deref(),
        Some("validation")
    );
    assert_eq!(
        field(&spans[1], "otel.status_code").as_deref(),
        Some("ERROR")
    );
}
