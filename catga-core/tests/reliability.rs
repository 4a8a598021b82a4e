//! Idempotency, caching and dead letters, through the public API. Timing on Tokio's paused
//! clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::behavior::{
    CacheKey, Caching, DeadLetter, Idempotency, IdempotencyKey, Retry, Validation,
};
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::store::idempotency::MemoryIdempotencyStore;
use uuid::Uuid;

/// Charges once per message id; takes 50 ms.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
    pub fail: bool,
}

/// Idempotent by a key it declares.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
}

impl IdempotencyKey for Refund {
    fn idempotency_key(&self) -> String {
        self.refund_id.clone()
    }
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charged {
    pub cents: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceChanged;

#[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
    pub trace: String,
}

impl CacheKey for GetPrice {
    fn cache_key(&self) -> String {
        self.sku.to_string()
    }
}

/// Not cached: no `cache_ttl`.
#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetStock;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub address: String,
}

impl Validate for Ship {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.address.is_empty() {
            errors.add("address", "required");
        }
        errors.into_result()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("bank unavailable")]
    Unavailable,
}

impl Retryable for BankError {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[derive(Default)]
pub struct Bank {
    charges: AtomicU32,
    refunds: AtomicU32,
    notified: AtomicU32,
    price_reads: AtomicU32,
    stock_reads: AtomicU32,
}

#[handler]
impl Bank {
    async fn charge(&self, cmd: Charge, ctx: &Context) -> Result<u64, BankError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if cmd.fail {
            return Err(BankError::Unavailable);
        }
        let n = self.charges.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.publish(Charged { cents: cmd.cents })
            .map_err(|_| BankError::Unavailable)?;
        Ok(u64::from(n) * 1000 + cmd.cents)
    }

    async fn refund(&self, _cmd: Refund) -> Result<u64, BankError> {
        Ok(u64::from(self.refunds.fetch_add(1, Ordering::SeqCst) + 1))
    }

    async fn notify(&self, _event: &Charged) -> Result<(), BankError> {
        self.notified.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn price(&self, q: GetPrice) -> Result<u64, BankError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.price_reads.fetch_add(1, Ordering::SeqCst);
        Ok(q.sku * 100)
    }

    async fn stock(&self, _q: GetStock) -> Result<u64, BankError> {
        Ok(u64::from(self.stock_reads.fetch_add(1, Ordering::SeqCst)))
    }

    async fn ship(&self, _cmd: Ship) -> Result<(), BankError> {
        Ok(())
    }
}

fn with_id(id: Uuid) -> Context {
    Context::new().with_message_id(id)
}

// ---- idempotency ----

#[tokio::test(start_paused = true)]
async fn a_repeated_message_id_gets_the_first_reply_without_running_again() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let first = app
        .send_with(
            Charge {
                cents: 5,
                fail: false,
            },
            with_id(id),
        )
        .await
        .unwrap();
    let again = app
        .send_with(
            Charge {
                cents: 5,
                fail: false,
            },
            with_id(id),
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
    // Its event was published once; the repeat of the command does not publish again.
    assert_eq!(bank.notified.load(Ordering::SeqCst), 1);
    // Another id is another charge.
    app.send_with(
        Charge {
            cents: 5,
            fail: false,
        },
        with_id(Uuid::now_v7()),
    )
    .await
    .unwrap();
    assert_eq!(bank.charges.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_duplicate_waits_for_the_first_and_shares_its_reply() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let (a, b, c) = tokio::join!(
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
        app.send_with(
            Charge {
                cents: 7,
                fail: false
            },
            with_id(id)
        ),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a == b && b == c);
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_releases_the_key_so_a_retry_runs() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let err = app
        .send_with(
            Charge {
                cents: 1,
                fail: true,
            },
            with_id(id),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler");
    app.send_with(
        Charge {
            cents: 1,
            fail: false,
        },
        with_id(id),
    )
    .await
    .unwrap();
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_declared_key_deduplicates_across_message_ids_and_replies_expire() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::new(MemoryIdempotencyStore::new()).ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    let refund = || Refund {
        refund_id: "r-1".into(),
    };
    assert_eq!(app.send(refund()).await.unwrap(), 1);
    assert_eq!(
        app.send(refund()).await.unwrap(),
        1,
        "fresh message id, same key"
    );
    assert_eq!(bank.refunds.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(app.send(refund()).await.unwrap(), 2, "the record expired");
}

#[tokio::test(start_paused = true)]
async fn event_handlers_are_deduplicated_per_handler_and_queries_not_at_all() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    app.publish_with(Charged { cents: 1 }, with_id(id))
        .await
        .unwrap();
    app.publish_with(Charged { cents: 1 }, with_id(id))
        .await
        .unwrap();
    assert_eq!(
        bank.notified.load(Ordering::SeqCst),
        1,
        "a redelivered event is handled once"
    );
    app.send_with(GetStock, with_id(id)).await.unwrap();
    app.send_with(GetStock, with_id(id)).await.unwrap();
    assert_eq!(bank.stock_reads.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_bytes_path_is_deduplicated_too() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let id = Uuid::now_v7();
    let payload = br#"{"cents":9,"fail":false}"#;
    let first = app
        .dispatch_bytes("Charge", payload, with_id(id))
        .await
        .unwrap();
    let again = app
        .dispatch_bytes("Charge", payload, with_id(id))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(bank.charges.load(Ordering::SeqCst), 1);
}

// ---- caching ----

#[tokio::test(start_paused = true)]
async fn query_replies_are_cached_for_their_ttl_by_key() {
    let bank = Arc::new(Bank::default());
    let caching = Arc::new(Caching::new());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(SharedCaching(caching.clone()))
        .build()
        .unwrap();
    let get = |trace: &str| GetPrice {
        sku: 4,
        trace: trace.into(),
    };
    assert_eq!(app.send(get("a")).await.unwrap(), 400);
    assert_eq!(
        app.send(get("b")).await.unwrap(),
        400,
        "same key: `trace` is not in it"
    );
    assert_eq!(bank.price_reads.load(Ordering::SeqCst), 1);
    assert_eq!(caching.cached::<GetPrice>(), 1);
    tokio::time::advance(Duration::from_secs(31)).await;
    app.send(get("c")).await.unwrap();
    assert_eq!(
        bank.price_reads.load(Ordering::SeqCst),
        2,
        "expired after 30 s"
    );
    // A query without `cache_ttl` is not cached.
    app.send(GetStock).await.unwrap();
    app.send(GetStock).await.unwrap();
    assert_eq!(bank.stock_reads.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_named_event_invalidates_even_with_no_handler_and_manual_invalidation_works() {
    let bank = Arc::new(Bank::default());
    let caching = Arc::new(Caching::new());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(SharedCaching(caching.clone()))
        .build()
        .unwrap();
    let get = || GetPrice {
        sku: 1,
        trace: String::new(),
    };
    app.send(get()).await.unwrap();
    app.publish(PriceChanged).await.unwrap(); // `PriceChanged` has no handler
    assert_eq!(caching.cached::<GetPrice>(), 0);
    app.send(get()).await.unwrap();
    assert_eq!(bank.price_reads.load(Ordering::SeqCst), 2);
    caching.invalidate::<GetPrice>();
    app.send(get()).await.unwrap();
    assert_eq!(bank.price_reads.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_load_once() {
    let bank = Arc::new(Bank::default());
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(Caching::new())
        .build()
        .unwrap();
    let get = || GetPrice {
        sku: 2,
        trace: String::new(),
    };
    let replies = futures::future::join_all((0..10).map(|_| app.send(get()))).await;
    assert!(replies.iter().all(|r| r.as_ref().ok() == Some(&200)));
    assert_eq!(bank.price_reads.load(Ordering::SeqCst), 1, "single flight");
}

/// Keeps a handle on the caching behaviour inside the app.
struct SharedCaching(Arc<Caching>);

impl Behavior for SharedCaching {
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl std::future::Future<Output = Result<P::Output, Error>> + Send {
        self.0.handle(msg, ctx, next)
    }

    fn observe_publish(&self, event: &dyn catga_core::AnyMessage, ctx: &Context) {
        self.0.observe_publish(event, ctx);
    }
}

// ---- dead letters ----

#[tokio::test(start_paused = true)]
async fn a_message_that_exhausts_its_retries_is_dead_lettered_and_can_be_replayed() {
    let bank = Arc::new(Bank::default());
    let letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state_arc(bank.clone())
        .layer(DeadLetter::new(letters.clone()))
        .layer(
            Retry::exponential(3)
                .base_delay(Duration::from_millis(10))
                .without_jitter(),
        )
        .build()
        .unwrap();
    let ctx = Context::new().with_header("tenant", "acme");
    let correlation = ctx.correlation_id();
    let err = app
        .send_with(
            Charge {
                cents: 3,
                fail: true,
            },
            ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "handler", "the caller still gets the error");
    let stored = letters.list(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    let letter = &stored[0];
    assert_eq!(letter.message, "Charge");
    assert_eq!(letter.code, "handler");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.correlation_id, correlation);
    assert_eq!(
        letter.headers,
        vec![("tenant".to_string(), "acme".to_string())]
    );
    let payload: serde_json::Value =
        serde_json::from_slice(letter.payload.as_ref().unwrap()).unwrap();
    assert_eq!(payload["cents"], 3);

    // Fix the cause (here: the payload says `fail`), then replay a corrected letter.
    let mut fixed = letter.clone();
    letters.take(letter.id).await.unwrap();
    fixed.payload = Some(br#"{"cents":3,"fail":false}"#.to_vec());
    letters.put(fixed.clone()).await.unwrap();
    let reply = app
        .replay_dead_letter(&letters, fixed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(serde_json::from_slice::<u64>(&reply).unwrap(), 1003);
    assert_eq!(letters.count().await.unwrap(), 0, "replayed and removed");
    let err = app
        .replay_dead_letter(&letters, fixed.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_message", "a letter is replayed once");
}

#[tokio::test]
async fn validation_failures_are_dead_lettered_but_refusals_are_not() {
    let bank = Arc::new(Bank::default());
    let letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state_arc(bank)
        .layer(DeadLetter::new(letters.clone()))
        .layer(
            catga_core::behavior::RateLimit::global(catga_core::policy::Rate::per_second(1))
                .burst(1),
        )
        .layer(Validation)
        .build()
        .unwrap();
    let err = app
        .send(Ship {
            address: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation");
    let err = app
        .send(Ship {
            address: String::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::RateLimited { .. }));
    let stored = letters.list(10).await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the rate-limit refusal was never attempted"
    );
    assert_eq!(stored[0].code, "validation");
}

#[tokio::test]
async fn a_failing_event_handler_is_dead_lettered_with_its_name() {
    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Audited;

    #[handler]
    async fn audit(_event: &Audited) -> Result<(), BankError> {
        Err(BankError::Unavailable)
    }

    let letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state(Bank::default())
        .layer(DeadLetter::new(letters.clone()))
        .build()
        .unwrap();
    app.publish(Audited).await.unwrap_err();
    let stored = letters.list(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].handler.as_deref(), Some("reliability::audit"));
}

#[test]
fn the_behaviours_report_their_counters() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let bank = Arc::new(Bank::default());
            let letters = MemoryDeadLetterStore::new();
            let app = Catga::builder()
                .state_arc(bank)
                .layer(DeadLetter::new(letters))
                .layer(catga_core::behavior::RateLimit::declared())
                .layer(catga_core::behavior::ConcurrencyLimit::per_message(1))
                .layer(Idempotency::default())
                .layer(Caching::new())
                .build()
                .unwrap();
            let id = Uuid::now_v7();
            for _ in 0..2 {
                app.send_with(
                    Refund {
                        refund_id: "x".into(),
                    },
                    with_id(id),
                )
                .await
                .unwrap();
                app.send(GetPrice {
                    sku: 1,
                    trace: String::new(),
                })
                .await
                .unwrap();
            }
            // Shed: two at once with a limit of one and no queue.
            let (a, b) = tokio::join!(
                app.send(Charge {
                    cents: 1,
                    fail: false
                }),
                app.send(Charge {
                    cents: 2,
                    fail: false
                })
            );
            assert!(a.is_err() != b.is_err());
            app.send(Charge {
                cents: 1,
                fail: true,
            })
            .await
            .unwrap_err();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str| -> u64 {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(counter("catga_idempotency_hits_total"), 1);
    assert_eq!(counter("catga_cache_hits_total"), 1);
    assert_eq!(counter("catga_cache_misses_total"), 1);
    assert_eq!(counter("catga_concurrency_limit_shed_total"), 1);
    assert_eq!(
        counter("catga_dead_letters_total"),
        1,
        "the shed one is not a dead letter"
    );
}
