//! `reliability` tests, continued: caching and dead letters (helpers live in `main.rs`).

use super::*;

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
        .layer(Arc::clone(&caching))
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
        .layer(Arc::clone(&caching))
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
    assert_eq!(
        stored[0].handler.as_deref(),
        Some("reliability::caching_and_dead_letters::audit")
    );
}

#[test]
fn the_behaviors_report_their_counters() {
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
                .layer(catga_core::behavior::Retry::exponential(3))
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
        counter("catga_retries_total"),
        2,
        "the failing charge is tried three times"
    );
    assert_eq!(
        counter("catga_dead_letters_total"),
        1,
        "the shed one is not a dead letter"
    );
}
