//! The Redis idempotency store beyond the conformance suite: one round trip per operation (at
//! the wire), batches, waking waiters across instances, the key layout, size limits, values
//! the store did not write, a server that goes away, loses its data or its scripts, and the
//! store behind the `Idempotency` behaviour of two applications.

#[path = "store_idempotency/apps.rs"]
mod apps;
mod common;
#[path = "store_idempotency/faults.rs"]
mod faults;

use std::sync::Arc;
use std::time::{Duration, Instant};

use catga_core::store::idempotency::{Claim, IdempotencyStore, KeyId, ReplyKey};
use catga_redis::store::{RedisIdempotencyStore, RedisStoreError, RedisStores};
use common::outage::RESPONSE_TIMEOUT;
use common::round_trips::RoundTrips;
use common::slice::Slice;
use common::store_error::{self, redis_error};
use uuid::Uuid;

static PLACE: &str = "tests.orders.place";
static PLACED: &str = "tests.orders.placed";
const LONG: Duration = Duration::from_secs(60);
const REPLY: &[u8] = br#"{"order":42}"#;

fn fresh() -> ReplyKey {
    ReplyKey {
        message: PLACE,
        handler: None,
        id: KeyId::MessageId(Uuid::now_v7()),
    }
}

fn declared(handler: Option<&'static str>, text: &str) -> ReplyKey {
    ReplyKey {
        message: PLACED,
        handler,
        id: KeyId::Declared(text.to_string()),
    }
}

fn completed(reply: &[u8]) -> Claim {
    Claim::Completed(Arc::from(reply))
}

/// A typed error for a value the store did not write ([`store_error::assert_not_ours`]), not
/// worth trying again.
fn assert_not_ours(what: &str, error: &RedisStoreError) {
    store_error::assert_not_ours(what, error);
    assert!(!error.is_retryable(), "{what}: {error} is not retryable");
}

/// A duplicate on a task of its own: waits for `key` and claims it again, until it is no
/// longer in progress; the claim it ends with.
fn duplicate(store: RedisIdempotencyStore, key: &ReplyKey) -> tokio::task::JoinHandle<Claim> {
    let key = key.clone();
    tokio::spawn(async move {
        loop {
            store.wait(&key, LONG).await.expect("wait");
            match store.claim(&key, LONG).await.expect("claim") {
                Claim::InProgress => continue,
                other => return other,
            }
        }
    })
}

/// What one operation cost at the wire: (round trips, commands).
fn cost(proxy: &RoundTrips) -> (usize, usize) {
    (proxy.round_trips(), proxy.commands())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_complete_release_and_wait_each_take_one_round_trip() {
    let Some(slice) = Slice::open_within("idem_round_trips", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.idempotency();
    store.load_scripts().await.expect("load scripts");
    // The first wait opens the subscriber connection (through the proxy too).
    store
        .wait(&fresh(), LONG)
        .await
        .expect("wait for a free key");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let key = fresh();
    proxy.reset();
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
    assert_eq!(cost(&proxy), (1, 1), "claim");
    assert_eq!(proxy.names(), ["EVALSHA"]);

    proxy.reset();
    store.complete(&key, REPLY, LONG).await.expect("complete");
    assert_eq!(cost(&proxy), (1, 1), "complete");

    proxy.reset();
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        completed(REPLY)
    );
    assert_eq!(cost(&proxy), (1, 1), "a claim that finds the reply");

    let held = fresh();
    store.claim(&held, LONG).await.expect("claim");
    proxy.reset();
    store.release(&held).await.expect("release");
    assert_eq!(cost(&proxy), (1, 1), "release");
    assert_eq!(proxy.names(), ["EVALSHA"]);

    proxy.reset();
    store
        .wait(&held, LONG)
        .await
        .expect("wait for a key nobody holds");
    assert_eq!(
        cost(&proxy),
        (1, 1),
        "a wait that finds the key free looks once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_many_and_complete_many_take_one_round_trip_for_sixteen_keys() {
    let Some(slice) = Slice::open_within("idem_batches", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.idempotency();
    store.load_scripts().await.expect("load scripts");
    let keys: Vec<ReplyKey> = (0..16).map(|_| fresh()).collect();
    let replies: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();

    proxy.reset();
    let claims = store.claim_many(&keys, LONG).await.expect("claim_many");
    assert_eq!(claims, vec![Claim::Claimed; 16]);
    assert_eq!(
        cost(&proxy),
        (1, 16),
        "claim_many: one pipeline of 16 EVALSHAs"
    );

    let completions: Vec<(&ReplyKey, &[u8])> = keys
        .iter()
        .zip(&replies)
        .map(|(key, reply)| (key, reply.as_slice()))
        .collect();
    proxy.reset();
    store
        .complete_many(&completions, LONG)
        .await
        .expect("complete_many");
    assert_eq!(cost(&proxy), (1, 16), "complete_many");

    // A batch mixing completed, held and new keys; a key given twice.
    let held = fresh();
    store.claim(&held, LONG).await.expect("claim");
    let new = fresh();
    let mixed = [keys[3].clone(), held, new.clone(), new];
    proxy.reset();
    let claims = store.claim_many(&mixed, LONG).await.expect("claim_many");
    assert_eq!(
        claims,
        [
            completed(&replies[3]),
            Claim::InProgress,
            Claim::Claimed,
            Claim::InProgress
        ]
    );
    assert_eq!(cost(&proxy), (1, 4));

    proxy.reset();
    assert_eq!(store.claim_many(&[], LONG).await.expect("nothing"), []);
    store.complete_many(&[], LONG).await.expect("nothing");
    assert_eq!(cost(&proxy), (0, 0), "an empty batch sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_meets_a_foreign_value_gives_back_the_keys_it_took() {
    let Some(slice) = Slice::open_within("idem_batch_error", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.idempotency().await;
    let (first, foreign, last) = (fresh(), fresh(), fresh());
    let _: () = redis::cmd("SET")
        .arg(store.key_of(&foreign))
        .arg("written by another program")
        .query_async(&mut slice.raw().await)
        .await
        .expect("SET");
    let error = store
        .claim_many(&[first.clone(), foreign, last.clone()], LONG)
        .await
        .expect_err("a batch with a foreign value");
    assert!(
        matches!(error, RedisStoreError::Malformed { .. }),
        "{error:?}"
    );
    for key in [&first, &last] {
        assert_eq!(
            store.claim(key, LONG).await.expect("claim"),
            Claim::Claimed,
            "`{key}` was given back when the batch failed"
        );
    }
}

/// Two instances (two connections, two subscribers): B waits for a key A holds, with a poll
/// interval far longer than the test, so only the notification can wake it.
async fn woken_across_instances(test: &str, settle: fn(RedisIdempotencyStore, ReplyKey)) {
    let Some(slice) = Slice::open_within(test, RESPONSE_TIMEOUT).await else {
        return;
    };
    let a = slice.idempotency().await;
    let proxy = RoundTrips::start(&slice.url).await;
    let b = slice
        .connect_at(proxy.url())
        .await
        .idempotency()
        .poll_interval(Duration::from_secs(300))
        .expect("a valid poll interval");
    b.load_scripts().await.expect("load scripts");
    b.wait(&fresh(), LONG).await.expect("open B's subscriber");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let key = fresh();
    assert_eq!(a.claim(&key, LONG).await.expect("A claims"), Claim::Claimed);
    assert_eq!(
        b.claim(&key, LONG).await.expect("B claims"),
        Claim::InProgress
    );
    proxy.reset();
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move {
            b.wait(&key, Duration::from_secs(120))
                .await
                .expect("B waits");
            Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "B waits while A holds the key");
    let settled = Instant::now();
    settle(a.clone(), key.clone());
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("B is woken long before its poll interval (300 s)")
        .expect("the waiting task");
    let latency = woken.saturating_duration_since(settled);
    assert!(latency < Duration::from_secs(2), "woken {latency:?} after");
    assert_eq!(
        cost(&proxy),
        (1, 1),
        "B's wait looked at the key once; the wake-up came over pub/sub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_in_one_instance_wakes_a_waiter_in_another() {
    woken_across_instances("idem_woken_by_completion", |a, key| {
        tokio::spawn(async move { a.complete(&key, REPLY, LONG).await.expect("A completes") });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_in_one_instance_wakes_a_waiter_in_another() {
    woken_across_instances("idem_woken_by_release", |a, key| {
        tokio::spawn(async move { a.release(&key).await.expect("A releases") });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_sharing_a_transport_connection_is_woken_over_pub_sub_too() {
    let Some(slice) = Slice::open_within("idem_sharing", RESPONSE_TIMEOUT).await else {
        return;
    };
    let transport = slice.transport().await;
    let shared = RedisStores::sharing(&transport)
        .idempotency()
        .poll_interval(Duration::from_secs(300))
        .expect("valid");
    let other = slice.idempotency().await;
    let key = fresh();
    assert_eq!(
        other.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
    let waiting = duplicate(shared.clone(), &key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.complete(&key, REPLY, LONG).await.expect("complete");
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken long before the poll interval (300 s)")
        .expect("the waiting task");
    assert_eq!(outcome, completed(REPLY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_looks_again_every_poll_interval_and_at_the_lease_end() {
    let Some(slice) = Slice::open_within("idem_poll", RESPONSE_TIMEOUT).await else {
        return;
    };
    let a = slice.idempotency().await;
    let b = slice
        .idempotency()
        .await
        .poll_interval(Duration::from_millis(100))
        .expect("valid");
    // The key vanishes without a notification (deleted by hand): the poll finds it.
    let key = fresh();
    a.claim(&key, LONG).await.expect("claim");
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move { b.wait(&key, LONG).await.expect("wait") }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    let _: () = redis::cmd("DEL")
        .arg(a.key_of(&key))
        .query_async(&mut slice.raw().await)
        .await
        .expect("DEL");
    tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the poll finds the key gone")
        .expect("the waiting task");

    // A lease that runs out ends the wait, however long the poll interval.
    let slow = b.poll_interval(Duration::from_secs(300)).expect("valid");
    let key = fresh();
    a.claim(&key, Duration::from_millis(300))
        .await
        .expect("claim");
    let started = Instant::now();
    slow.wait(&key, LONG).await.expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.claim(&key, LONG).await.expect("claim"), Claim::Claimed);

    // And the wait's own timeout.
    let started = Instant::now();
    slow.wait(&key, Duration::from_millis(200))
        .await
        .expect("wait");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_readable_and_user_text_cannot_reach_another_key() {
    let Some(slice) = Slice::open_within("idem_keys", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.idempotency().await;
    let p = &slice.prefix;
    let id = Uuid::now_v7();
    let by_id = ReplyKey {
        message: PLACE,
        handler: None,
        id: KeyId::MessageId(id),
    };
    assert_eq!(
        store.key_of(&by_id),
        format!("{p}:idempotency:tests.orders.place:-:id:{id}")
    );
    let nasty = declared(Some("shop::mail"), "{cart}:42 %");
    assert_eq!(
        store.key_of(&nasty),
        format!("{p}:idempotency:tests.orders.placed:shop%3A%3Amail:key:%7Bcart%7D%3A42%20%25")
    );
    // Unescaped, these two would be one key.
    let one = declared(Some("h:key:x"), "y");
    let other = declared(Some("h"), "x:key:y");
    store.claim(&one, LONG).await.expect("claim");
    store.complete(&one, REPLY, LONG).await.expect("complete");
    assert_eq!(
        store.claim(&other, LONG).await.expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        store.claim(&nasty, LONG).await.expect("claim"),
        Claim::Claimed
    );
    let mut raw = slice.raw().await;
    for key in [&one, &other, &nasty] {
        let name = store.key_of(key);
        assert!(
            !name.contains('{') && !name.contains('}'),
            "no hash tag: {name}"
        );
        let exists: bool = redis::cmd("EXISTS")
            .arg(&name)
            .query_async(&mut raw)
            .await
            .expect("EXISTS");
        assert!(exists, "{name}");
    }
    let value: Vec<u8> = redis::cmd("GET")
        .arg(store.key_of(&one))
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(
        value,
        [b"D", REPLY].concat(),
        "a completed key reads `D<reply>`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_max_write_bytes_is_refused_before_anything_is_sent() {
    let Some(slice) = Slice::open_within("idem_too_large", RESPONSE_TIMEOUT).await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice
        .connect_at(proxy.url())
        .await
        .idempotency()
        .max_write_bytes(1024)
        .expect("a valid limit");
    let (small, big) = (fresh(), fresh());
    store
        .claim_many(&[small.clone(), big.clone()], LONG)
        .await
        .expect("claim");
    let large = vec![b'x'; 1025];
    proxy.reset();
    let error = store
        .complete(&big, &large, LONG)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            redis_error(&error),
            RedisStoreError::TooLarge {
                size: 1025,
                limit: 1024,
                ..
            }
        ),
        "{error:?}"
    );
    let error = store
        .complete_many(&[(&small, REPLY), (&big, &large)], LONG)
        .await
        .expect_err("too large");
    assert!(
        matches!(error, RedisStoreError::TooLarge { .. }),
        "{error:?}"
    );
    assert_eq!(cost(&proxy), (0, 0), "nothing was sent");
    assert_eq!(
        store.claim(&small, LONG).await.expect("claim"),
        Claim::InProgress
    );
    store
        .complete(&big, &large[..1024], LONG)
        .await
        .expect("at the limit");

    for refused in [
        slice.idempotency().await.max_write_bytes(0).map(drop),
        slice
            .idempotency()
            .await
            .max_write_bytes(513 << 20)
            .map(drop),
        slice
            .idempotency()
            .await
            .poll_interval(Duration::from_millis(9))
            .map(drop),
    ] {
        assert!(
            matches!(refused, Err(RedisStoreError::InvalidOption { .. })),
            "{refused:?}"
        );
    }
}
