//! What the Postgres idempotency, dead-letter and saga stores do beyond the conformance suite:
//! instances on one schema behave as one store, a waiter in one instance is woken by a change
//! in another (by `NOTIFY`, not by polling), expired rows are purged, dead letters are found by
//! message and time and purged by age, and bad input gets typed errors.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::saga::SagaState;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};
use catga_core::store::idempotency::{Claim, IdempotencyStore, KeyId, ReplyKey};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError};
use catga_postgres::{
    PostgresDeadLetterStore, PostgresError, PostgresIdempotencyStore, PostgresSagaStore,
};
use common::Db;
use sqlx::PgPool;
use uuid::Uuid;

/// Far longer than any test: a waiter returning is woken, not timed out.
const LONG: Duration = Duration::from_secs(120);
/// A poll interval no test waits out: a waiter woken within [`WOKEN`] was notified.
const NO_POLL: Duration = Duration::from_secs(60);
/// How soon a notified waiter must return.
const WOKEN: Duration = Duration::from_secs(5);

/// A second pool on the same database, as another process of the application would have.
async fn other_process() -> PgPool {
    PgPool::connect(&common::url())
        .await
        .expect("a second pool on the test database")
}

fn key() -> ReplyKey {
    ReplyKey {
        message: "tests.orders.place",
        handler: None,
        id: KeyId::MessageId(Uuid::now_v7()),
    }
}

/// The `PostgresError` inside a store's boxed error.
fn postgres_error(error: &BoxError) -> &PostgresError {
    error
        .downcast_ref::<PostgresError>()
        .unwrap_or_else(|| panic!("a `PostgresError`, got {error:?}"))
}

/// Two instances (two pools, as two processes): a claim in one holds the key in the other; a
/// waiter in the second is woken by the first's completion well before its poll, and gets the
/// reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_in_one_instance_wakes_a_waiter_in_another() {
    let Some(db) = Db::open("idem_wake_complete").await else {
        return;
    };
    let first = PostgresIdempotencyStore::new(db.pool.clone(), &db.schema);
    let second = PostgresIdempotencyStore::new(other_process().await, &db.schema)
        .poll_interval(NO_POLL)
        .expect("a valid poll interval");
    let key = key();
    assert_eq!(
        first.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        second.claim(&key, LONG).await.expect("claim"),
        Claim::InProgress,
        "a key claimed in one instance is held in the other"
    );

    let waiter = tokio::spawn({
        let (second, key) = (second.clone(), key.clone());
        async move { second.wait(&key, LONG).await }
    });
    // Let the waiter subscribe and look at the key first (the interesting case).
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.complete(&key, b"42", LONG).await.expect("complete");
    tokio::time::timeout(WOKEN, waiter)
        .await
        .expect("the waiter is woken by the completion's NOTIFY, not its 60 s poll")
        .expect("the waiter task")
        .expect("wait");
    assert_eq!(
        second.claim(&key, LONG).await.expect("claim"),
        Claim::Completed(Arc::from(&b"42"[..]))
    );
}

/// A release in one instance wakes the other's waiter, which then takes the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_in_one_instance_wakes_a_waiter_in_another() {
    let Some(db) = Db::open("idem_wake_release").await else {
        return;
    };
    let first = PostgresIdempotencyStore::new(db.pool.clone(), &db.schema);
    let second = PostgresIdempotencyStore::new(other_process().await, &db.schema)
        .poll_interval(NO_POLL)
        .expect("a valid poll interval");
    let key = key();
    assert_eq!(
        first.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (second, key) = (second.clone(), key.clone());
            tokio::spawn(async move { second.wait(&key, LONG).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.release(&key).await.expect("release");
    for waiter in waiters {
        tokio::time::timeout(WOKEN, waiter)
            .await
            .expect("every waiter of the key is woken by one NOTIFY")
            .expect("the waiter task")
            .expect("wait");
    }
    assert_eq!(
        second.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
}

/// A waiter whose holder died returns when the lease runs out, not at its own timeout or poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_returns_when_the_holders_lease_runs_out() {
    let Some(db) = Db::open("idem_lease_end").await else {
        return;
    };
    let store = PostgresIdempotencyStore::new(db.pool.clone(), &db.schema)
        .poll_interval(NO_POLL)
        .expect("a valid poll interval");
    let key = key();
    assert_eq!(
        store
            .claim(&key, Duration::from_millis(300))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    tokio::time::timeout(WOKEN, store.wait(&key, LONG))
        .await
        .expect("the wait ends with the lease")
        .expect("wait");
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
}

/// Rows past their lease or TTL count as absent, and `purge_expired` deletes exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_expired_deletes_exactly_the_expired_rows() {
    let Some(db) = Db::open("idem_purge").await else {
        return;
    };
    let store = PostgresIdempotencyStore::new(db.pool.clone(), &db.schema);
    let (lapsed, done, live) = (key(), key(), key());
    store
        .claim(&lapsed, Duration::from_millis(1))
        .await
        .expect("claim");
    store.claim(&done, LONG).await.expect("claim");
    store
        .complete(&done, b"1", Duration::from_millis(1))
        .await
        .expect("complete");
    store.claim(&live, LONG).await.expect("claim");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.purge_expired().await.expect("purge"), 2);
    assert_eq!(
        db.count("SELECT count(*) FROM {schema}.idempotency").await,
        1
    );
    assert_eq!(
        store.claim(&live, LONG).await.expect("claim"),
        Claim::InProgress
    );
    assert_eq!(
        store.claim(&done, LONG).await.expect("claim"),
        Claim::Claimed
    );
}

/// Keys and replies Postgres cannot hold, or larger than allowed, are refused with typed
/// errors before anything is written; so are invalid options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_bad_input_gets_typed_errors() {
    let Some(db) = Db::open("idem_bad_input").await else {
        return;
    };
    let store = PostgresIdempotencyStore::new(db.pool.clone(), &db.schema)
        .max_write_bytes(16)
        .expect("a valid limit");
    let nul = ReplyKey {
        id: KeyId::Declared("order\0-1".to_owned()),
        ..key()
    };
    let error = store.claim(&nul, LONG).await.expect_err("a NUL in a key");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Unrepresentable { .. }
    ));

    let key = key();
    store.claim(&key, LONG).await.expect("claim");
    let error = store
        .complete(&key, &[7; 17], LONG)
        .await
        .expect_err("17 bytes over 16");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::TooLarge {
            bytes: 17,
            limit: 16,
            ..
        }
    ));
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        Claim::InProgress
    );

    let fresh = || PostgresIdempotencyStore::new(db.pool.clone(), &db.schema);
    assert!(fresh().poll_interval(Duration::from_millis(1)).is_err());
    assert!(fresh().max_write_bytes(0).is_err());
    assert!(fresh().max_write_bytes(usize::MAX).is_err());
}

fn dead_letter(message: &str, failed_at: SystemTime) -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: message.to_owned(),
        handler: None,
        payload: Some(b"{}".to_vec()),
        code: "handler".to_owned(),
        error: "failed".to_owned(),
        attempts: u32::MAX,
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        headers: vec![("a".to_owned(), "1".to_owned())],
        failed_at,
        stage: FailureStage::Publish,
        source: None,
        raw_headers: None,
    }
}

/// Dead letters are found by message and by failure time, and purged by age; two instances
/// see the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_found_by_message_and_time_and_purged_by_age() {
    let Some(db) = Db::open("dlq_queries").await else {
        return;
    };
    let store = PostgresDeadLetterStore::new(db.pool.clone(), &db.schema);
    let other = PostgresDeadLetterStore::new(other_process().await, &db.schema);
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let records = [
        dead_letter("orders.place", now - 3 * hour),
        dead_letter("orders.pay", now - 2 * hour),
        dead_letter("orders.place", now - hour / 2),
    ];
    for record in &records {
        store.put(record.clone()).await.expect("put");
    }
    let ids = |found: Vec<DeadLetterRecord>| found.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let places = other
        .by_message("orders.place", 10)
        .await
        .expect("by message");
    assert_eq!(ids(places.clone()), [records[0].id, records[2].id]);
    assert_eq!(places[0].attempts, u32::MAX, "attempts keep every `u32`");
    assert_eq!(
        ids(other
            .by_message("orders.place", 1)
            .await
            .expect("by message")),
        [records[0].id]
    );
    assert_eq!(
        other.by_message("orders", 10).await.expect("by message"),
        []
    );

    let between = other
        .failed_between(now - 150 * hour / 60, now, 10)
        .await
        .expect("by time");
    assert_eq!(ids(between), [records[1].id, records[2].id]);
    let at_start = other
        .failed_between(records[0].failed_at, records[1].failed_at, 10)
        .await
        .expect("by time");
    assert_eq!(
        ids(at_start),
        [records[0].id],
        "from inclusive, until exclusive"
    );

    assert_eq!(other.purge_older_than(hour).await.expect("purge"), 2);
    assert_eq!(ids(store.list(10).await.expect("list")), [records[2].id]);
}

/// Text Postgres cannot hold and records over the limit are refused with typed errors, and
/// nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_bad_input_gets_typed_errors() {
    let Some(db) = Db::open("dlq_bad_input").await else {
        return;
    };
    let store = PostgresDeadLetterStore::new(db.pool.clone(), &db.schema)
        .max_write_bytes(1024)
        .expect("a valid limit");
    let mut nul = dead_letter("orders.place", SystemTime::now());
    nul.headers.push(("tenant".to_owned(), "a\0b".to_owned()));
    let error = store.put(nul).await.expect_err("a NUL in a header");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::Unrepresentable { .. }
    ));

    let big = DeadLetterRecord {
        payload: Some(vec![0; 2048]),
        ..dead_letter("orders.place", SystemTime::now())
    };
    let error = store.put(big).await.expect_err("2 KiB over 1 KiB");
    assert!(matches!(
        postgres_error(&error),
        PostgresError::TooLarge { limit: 1024, .. }
    ));
    assert_eq!(store.count().await.expect("count"), 0);
}

fn saga_record() -> SagaRecord {
    SagaRecord::new(&SagaState::new("tests.checkout"), b"{}".to_vec()).expect("a saga record")
}

/// Two instances on one schema: a save in one is a conflict for a stale writer in the other;
/// versions no instance can be at and oversized records get typed errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_instances_share_versions_and_bad_input_gets_typed_errors() {
    let Some(db) = Db::open("saga_shared").await else {
        return;
    };
    let first = PostgresSagaStore::new(db.pool.clone(), &db.schema);
    let second = PostgresSagaStore::new(other_process().await, &db.schema)
        .max_write_bytes(4096)
        .expect("a valid limit");
    let record = saga_record();
    assert_eq!(first.save(&record, 0).await.expect("save"), 1);
    assert_eq!(second.save(&record, 1).await.expect("save"), 2);
    assert!(matches!(
        first.save(&record, 1).await,
        Err(SagaStoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        first.save(&record, u64::MAX).await,
        Err(SagaStoreError::Conflict { actual: 2, .. })
    ));

    let big = SagaRecord {
        data: vec![0; 8192],
        ..saga_record()
    };
    match second.save(&big, 0).await {
        Err(SagaStoreError::Backend { source }) => assert!(matches!(
            source.downcast_ref::<PostgresError>(),
            Some(PostgresError::TooLarge { limit: 4096, .. })
        )),
        other => panic!("an oversized record is a `TooLarge` backend error, got {other:?}"),
    }
    assert_eq!(first.load(big.id).await.expect("load"), None);
}
