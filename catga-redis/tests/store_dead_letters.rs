//! The Redis dead-letter store beyond the conformance suite: one round trip per operation (at
//! the wire), `put_many`, the lookups and purge of the Postgres store, the key layout, size
//! limits, values the store did not write, a server that goes away, loses its data or its
//! scripts, and replaying a dead letter through an application.

mod common;
#[path = "store_dead_letters/faults.rs"]
mod faults;
#[path = "store_dead_letters/replay.rs"]
mod replay;

use std::time::{Duration, SystemTime};

use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};
use catga_redis::store::RedisStoreError;
use common::outage::RESPONSE_TIMEOUT;
use common::round_trips::RoundTrips;
use common::slice::Slice;
use common::store_error::{assert_not_ours, redis_error};
use uuid::Uuid;

impl Slice {
    /// `{<prefix>:dead_letters}:<name>`.
    fn key(&self, name: &str) -> String {
        format!("{{{}:dead_letters}}:{name}", self.prefix)
    }
}

/// Now, to the microsecond (what the store keeps).
fn now() -> SystemTime {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros();
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).expect("fits"))
}

fn record(message: &str, failed_at: SystemTime) -> DeadLetterRecord {
    DeadLetterRecord {
        id: Uuid::now_v7(),
        message: message.to_string(),
        handler: None,
        payload: Some(br#"{"cents":3}"#.to_vec()),
        code: "handler".into(),
        error: "card declined".into(),
        attempts: 1,
        message_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        headers: vec![("tenant".into(), "acme".into())],
        failed_at,
        stage: FailureStage::Handler,
        source: None,
        raw_headers: None,
    }
}

fn ids(records: &[DeadLetterRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

fn cost(proxy: &RoundTrips) -> (usize, usize) {
    (proxy.round_trips(), proxy.commands())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_takes_one_round_trip() {
    let Some(slice) = Slice::open_within("dlq_round_trips", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.dead_letters();
    store.load_scripts().await.expect("load scripts");
    let letter = record("orders.refund", now());
    let hour = Duration::from_secs(3600);
    let expectations: [(&str, &[&str]); 7] = [
        ("put", &["EVALSHA"]),
        ("list", &["EVALSHA"]),
        ("count", &["ZCARD"]),
        ("by_message", &["EVALSHA"]),
        ("failed_between", &["EVALSHA"]),
        ("purge_older_than", &["EVALSHA"]),
        ("take", &["EVALSHA"]),
    ];
    for (operation, names) in expectations {
        proxy.reset();
        match operation {
            "put" => store.put(letter.clone()).await.expect("put"),
            "list" => assert_eq!(
                store.list(10).await.expect("list"),
                std::slice::from_ref(&letter)
            ),
            "count" => assert_eq!(store.count().await.expect("count"), 1),
            "by_message" => assert_eq!(
                store
                    .by_message("orders.refund", 10)
                    .await
                    .expect("by_message"),
                std::slice::from_ref(&letter)
            ),
            "failed_between" => assert_eq!(
                store
                    .failed_between(letter.failed_at - hour, letter.failed_at + hour, 10)
                    .await
                    .expect("failed_between"),
                std::slice::from_ref(&letter)
            ),
            "purge_older_than" => assert_eq!(store.purge_older_than(hour).await.expect("purge"), 0),
            _ => assert_eq!(
                store.take(letter.id).await.expect("take"),
                Some(letter.clone())
            ),
        }
        assert_eq!(cost(&proxy), (1, 1), "{operation}");
        assert_eq!(proxy.names(), names, "{operation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_keeps_sixteen_records_in_one_round_trip() {
    let Some(slice) = Slice::open_within("dlq_put_many", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.dead_letters();
    store.load_scripts().await.expect("load scripts");
    let at = now();
    let letters: Vec<DeadLetterRecord> = (0..16)
        .map(|i| record("orders.refund", at + Duration::from_secs(i)))
        .collect();
    proxy.reset();
    store.put_many(&letters).await.expect("put_many");
    assert_eq!(cost(&proxy), (1, 1), "one script for the batch");
    assert_eq!(store.list(100).await.expect("list"), letters);
    proxy.reset();
    store.put_many(&[]).await.expect("nothing");
    assert_eq!(cost(&proxy), (0, 0), "an empty batch sends nothing");
}

/// A record replaced later in the same batch leaves one record and no stale index entry; a
/// key of another type fails the whole batch before anything of it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_many_replaces_within_a_batch_and_is_all_or_nothing() {
    let Some(slice) = Slice::open_within("dlq_put_many_edges", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let at = now();
    let first = record("orders.refund", at);
    let replaced = DeadLetterRecord {
        message: "orders.cancel".into(),
        ..first.clone()
    };
    let other = record("orders.refund", at + Duration::from_secs(1));
    store
        .put_many(&[first.clone(), other.clone(), replaced.clone()])
        .await
        .expect("put_many");
    assert_eq!(store.count().await.expect("count"), 2);
    assert_eq!(
        ids(&store
            .by_message("orders.refund", 10)
            .await
            .expect("by_message")),
        vec![other.id],
        "the replaced record's old entry is gone"
    );
    assert_eq!(
        store
            .by_message("orders.cancel", 10)
            .await
            .expect("by_message"),
        vec![replaced]
    );

    // Another program's list where one record of the batch would go.
    let blocked = record("orders.refund", at);
    let mut raw = slice.raw().await;
    let _: () = redis::cmd("RPUSH")
        .arg(store.record_key(blocked.id))
        .arg("not a hash")
        .query_async(&mut raw)
        .await
        .expect("RPUSH");
    let fresh = record("orders.refund", at);
    let error = store
        .put_many(&[fresh.clone(), blocked])
        .await
        .expect_err("WRONGTYPE");
    assert!(
        matches!(error, RedisStoreError::Command { .. }),
        "{error:?}"
    );
    assert_eq!(
        store.count().await.expect("count"),
        2,
        "nothing of the batch was written"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(store.record_key(fresh.id))
        .query_async(&mut raw)
        .await
        .expect("EXISTS");
    assert!(
        !exists,
        "the record before the refused one is not written either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_shares_one_hash_tag() {
    let Some(slice) = Slice::open_within("dlq_keys", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let letter = record("orders.refund", now());
    store.put(letter.clone()).await.expect("put");
    assert_eq!(
        store.record_key(letter.id),
        slice.key(&format!("record:{}", letter.id))
    );
    let mut expected = vec![
        slice.key("by_message"),
        slice.key("by_time"),
        slice.key("ids"),
        store.record_key(letter.id),
    ];
    expected.sort();
    assert_eq!(slice.keys().await, expected);
    let mut raw = slice.raw().await;
    let member: Vec<String> = redis::cmd("ZRANGE")
        .arg(slice.key("by_message"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .expect("ZRANGE");
    assert_eq!(member, [format!("orders.refund:{}", letter.id)]);
    let payload: Vec<u8> = redis::cmd("HGET")
        .arg(store.record_key(letter.id))
        .arg("payload")
        .query_async(&mut raw)
        .await
        .expect("HGET");
    assert_eq!(payload, br#"{"cents":3}"#, "a record is a readable hash");
    store.take(letter.id).await.expect("take");
    assert_eq!(
        slice.keys().await,
        Vec::<String>::new(),
        "a take leaves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_message_finds_that_message_only_oldest_first() {
    let Some(slice) = Slice::open_within("dlq_by_message", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    // Names that share a start, or hold what the index escapes.
    let names = ["a", "ab", "a:b", "a{x}", "a b", "a%3Ab", "ü"];
    let at = now();
    let mut all = Vec::new();
    for round in 0..2 {
        for name in names {
            let letter = record(name, at + Duration::from_secs(round));
            store.put(letter.clone()).await.expect("put");
            all.push(letter);
        }
    }
    for name in names {
        let expected: Vec<Uuid> = all
            .iter()
            .filter(|r| r.message == name)
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids(&store.by_message(name, 10).await.expect("by_message")),
            expected,
            "{name:?}"
        );
        assert_eq!(
            ids(&store.by_message(name, 1).await.expect("by_message")),
            expected[..1],
            "{name:?}, limit 1"
        );
    }
    assert_eq!(store.by_message("nothing", 10).await.expect("none"), []);
    assert_eq!(store.by_message("a", 0).await.expect("limit 0"), []);
    // Taking a record removes it from its message's index (the script escapes the name as the
    // client does).
    for letter in &all {
        store.take(letter.id).await.expect("take");
    }
    for name in names {
        assert_eq!(
            store.by_message(name, 10).await.expect("none"),
            [],
            "{name:?}"
        );
    }
    assert_eq!(slice.keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_between_is_from_inclusive_until_exclusive_in_time_order() {
    let Some(slice) = Slice::open_within("dlq_failed_between", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let t0 = now();
    let at = |micros: u64| t0 + Duration::from_micros(micros);
    // Ids in the opposite order of times: the order is by time, then id.
    let letters: Vec<DeadLetterRecord> = [40, 30, 20, 20, 10]
        .into_iter()
        .map(|us| record("orders.refund", at(us)))
        .collect();
    store.put_many(&letters).await.expect("put_many");
    let between = |from, until| store.failed_between(from, until, 100);
    assert_eq!(
        ids(&between(at(20), at(40)).await.expect("between")),
        [letters[2].id, letters[3].id, letters[1].id]
    );
    assert_eq!(
        ids(&between(at(10), at(11)).await.expect("between")),
        [letters[4].id]
    );
    // A bound between two microseconds: from rounds up, until excludes the earlier one.
    let half = Duration::from_nanos(500);
    assert_eq!(
        ids(&between(at(19) + half, at(30) + half)
            .await
            .expect("between")),
        [letters[2].id, letters[3].id, letters[1].id]
    );
    assert_eq!(
        ids(&store
            .failed_between(at(0), at(100), 2)
            .await
            .expect("limit")),
        [letters[4].id, letters[2].id]
    );
    assert_eq!(between(at(41), at(100)).await.expect("after"), []);
    assert_eq!(
        between(SystemTime::UNIX_EPOCH, at(100))
            .await
            .expect("all")
            .len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_older_than_removes_old_records_with_their_index_entries() {
    let Some(slice) = Slice::open_within("dlq_purge", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.dead_letters();
    let hour = Duration::from_secs(3600);
    let old = record("orders.old", now() - 2 * hour);
    let recent = record("orders.recent", now() - hour / 2);
    store
        .put_many(&[old.clone(), recent.clone()])
        .await
        .expect("put");
    assert_eq!(store.purge_older_than(hour).await.expect("purge"), 1);
    assert_eq!(
        store.list(10).await.expect("list"),
        std::slice::from_ref(&recent)
    );
    assert_eq!(
        store
            .by_message("orders.old", 10)
            .await
            .expect("by message"),
        []
    );
    assert_eq!(
        store
            .failed_between(SystemTime::UNIX_EPOCH, now() + hour, 10)
            .await
            .expect("by time"),
        std::slice::from_ref(&recent)
    );
    let mut expected = vec![
        slice.key("by_message"),
        slice.key("by_time"),
        slice.key("ids"),
        store.record_key(recent.id),
    ];
    expected.sort();
    assert_eq!(slice.keys().await, expected, "the old record left nothing");

    // 2,500 old records: purged 1,000 per round trip.
    let at = now() - 2 * hour;
    let many: Vec<DeadLetterRecord> = (0..2500).map(|_| record("orders.old", at)).collect();
    for chunk in many.chunks(500) {
        store.put_many(chunk).await.expect("put_many");
    }
    proxy.reset();
    assert_eq!(store.purge_older_than(hour).await.expect("purge"), 2500);
    assert_eq!(cost(&proxy), (3, 3), "1,000 + 1,000 + 500");
    assert_eq!(store.count().await.expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_stored_id_replaces_the_record_and_its_index_entries() {
    let Some(slice) = Slice::open_within("dlq_replace", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let hour = Duration::from_secs(3600);
    let first = record("orders.refund", now() - hour);
    store.put(first.clone()).await.expect("put");
    let again = DeadLetterRecord {
        message: "orders.refund:v2".into(),
        attempts: 2,
        handler: Some("shop::refunds".into()),
        failed_at: now(),
        ..first.clone()
    };
    store.put(again.clone()).await.expect("put again");
    assert_eq!(store.count().await.expect("count"), 1);
    assert_eq!(
        store.list(10).await.expect("list"),
        std::slice::from_ref(&again)
    );
    assert_eq!(
        store
            .by_message("orders.refund", 10)
            .await
            .expect("old name"),
        []
    );
    assert_eq!(
        store
            .by_message("orders.refund:v2", 10)
            .await
            .expect("new name"),
        std::slice::from_ref(&again)
    );
    assert_eq!(
        store
            .failed_between(
                first.failed_at,
                first.failed_at + Duration::from_secs(1),
                10
            )
            .await
            .expect("old time"),
        []
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_write_bytes_is_refused_before_anything_is_sent() {
    let Some(slice) = Slice::open_within("dlq_too_large", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice
        .connect_at(proxy.url())
        .await
        .dead_letters()
        .max_write_bytes(4096)
        .expect("a valid limit");
    let small = record("orders.refund", now());
    let big = DeadLetterRecord {
        payload: Some(vec![7; 4096]),
        ..record("orders.refund", now())
    };
    proxy.reset();
    let error = store.put(big.clone()).await.expect_err("too large");
    assert!(
        matches!(
            redis_error(&error),
            RedisStoreError::TooLarge { limit: 4096, .. }
        ),
        "{error:?}"
    );
    let error = store
        .put_many(&[small.clone(), big])
        .await
        .expect_err("too large");
    assert!(
        matches!(error, RedisStoreError::TooLarge { .. }),
        "{error:?}"
    );
    assert_eq!(cost(&proxy), (0, 0), "nothing was sent");
    assert_eq!(
        store.count().await.expect("count"),
        0,
        "not even the small one"
    );
    assert!(matches!(
        slice.dead_letters().await.max_write_bytes(0),
        Err(RedisStoreError::InvalidOption { .. })
    ));
}
