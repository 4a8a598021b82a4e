//! Values the store did not write, a `SCRIPT FLUSH`, and a server that goes away, restarting
//! with and without its data.

use std::time::{Duration, Instant, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore};

use super::common::outage;
use super::common::private_redis::{self, Persistence, PrivateRedis};
use super::{RESPONSE_TIMEOUT, Slice, assert_not_ours, now, record, redis_error};

/// A way to break a record: what it is, fields to set (name, value), fields to remove.
type Breakage<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a [&'a str]);
/// An operation's outcome and how long it took.
type Timed = (Result<(), BoxError>, Duration);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_store_did_not_write_gives_a_typed_error() {
    let Some(slice) = Slice::open_within("dlq_garbage", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let mut raw = slice.raw().await;
    let hour = Duration::from_secs(3600);

    // A record whose fields are wrong in one way each; the indexes name it as a put would.
    let breakages: [Breakage<'_>; 8] = [
        ("truncated", &[], &["message", "failed_at"]),
        ("bad attempts", &[("attempts", b"many")], &[]),
        ("attempts over u32", &[("attempts", b"4294967296")], &[]),
        ("bad uuid", &[("correlation_id", b"not-a-uuid")], &[]),
        ("not UTF-8", &[("error", b"\xff\xfe")], &[]),
        ("unknown stage", &[("stage", b"elsewhere")], &[]),
        ("bad time", &[("failed_at", b"12x")], &[]),
        ("missing header", &[("headers", b"2")], &[]),
    ];
    for (what, set, remove) in breakages {
        let letter = record("orders.refund", now());
        store.put(letter.clone()).await.expect("put");
        let key = store.record_key(letter.id);
        for (field, value) in set {
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(*field)
                .arg(*value)
                .query_async(&mut raw)
                .await
                .expect("HSET");
        }
        for field in remove {
            let _: () = redis::cmd("HDEL")
                .arg(&key)
                .arg(*field)
                .query_async(&mut raw)
                .await
                .expect("HDEL");
        }
        let error = store.take(letter.id).await.expect_err("take");
        assert_not_ours(
            &format!("take of a record with {what}"),
            redis_error(&error),
        );
        let kept: usize = redis::cmd("HLEN")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .expect("HLEN");
        assert!(
            kept > 0,
            "take never removes a record it cannot give back ({what})"
        );
        let error = store.list(10).await.expect_err("list");
        assert_not_ours(
            &format!("list with a record with {what}"),
            redis_error(&error),
        );
        let error = store
            .failed_between(SystemTime::UNIX_EPOCH, now() + hour, 10)
            .await
            .expect_err("failed_between");
        assert_not_ours(&format!("failed_between ({what})"), &error);
        if !remove.contains(&"message") {
            let error = store
                .by_message("orders.refund", 10)
                .await
                .expect_err("by_message");
            assert_not_ours(&format!("by_message ({what})"), &error);
        }
        assert_eq!(store.count().await.expect("count"), 1, "({what})");
        // Put it right: a put with its id replaces it.
        store.put(letter.clone()).await.expect("put again");
        assert_eq!(store.take(letter.id).await.expect("take"), Some(letter));
    }

    // A record key of another type.
    let letter = record("orders.refund", now());
    store.put(letter.clone()).await.expect("put");
    let key = store.record_key(letter.id);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .expect("DEL");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .expect("SET");
    let outcomes: Vec<(&str, Result<(), BoxError>)> = vec![
        ("take", store.take(letter.id).await.map(drop)),
        ("list", store.list(10).await.map(drop)),
        ("put", store.put(letter.clone()).await),
        (
            "by_message",
            store
                .by_message("orders.refund", 10)
                .await
                .map(drop)
                .map_err(Into::into),
        ),
        (
            "failed_between",
            store
                .failed_between(SystemTime::UNIX_EPOCH, now() + hour, 10)
                .await
                .map(drop)
                .map_err(Into::into),
        ),
        (
            "purge_older_than",
            store
                .purge_older_than(Duration::ZERO)
                .await
                .map(drop)
                .map_err(Into::into),
        ),
    ];
    for (operation, outcome) in outcomes {
        let error = outcome.expect_err(operation);
        assert_not_ours(
            &format!("{operation} over a string record"),
            redis_error(&error),
        );
    }
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(value, "garbage", "left as it was");

    // An index of another type.
    let _: () = redis::cmd("SET")
        .arg(slice.key("ids"))
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .expect("SET");
    let error = store.count().await.expect_err("count");
    assert_not_ours("count over a string index", redis_error(&error));
    let error = store.list(1).await.expect_err("list");
    assert_not_ours("list over a string index", redis_error(&error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_flush_in_the_middle_of_a_run_is_recovered_by_reloading() {
    // On a server of its own: a `SCRIPT FLUSH` of the shared one would hit other tests.
    let Some((server, slice)) = outage::private("dlq_script_flush", Persistence::None).await else {
        return;
    };
    let store = slice.dead_letters().await;
    let letters: Vec<DeadLetterRecord> = (0..3).map(|_| record("orders.refund", now())).collect();
    store.put(letters[0].clone()).await.expect("put");
    server.script_flush().await;
    store
        .put_many(&letters[1..])
        .await
        .expect("put_many after a flush");
    server.script_flush().await;
    assert_eq!(store.list(10).await.expect("list after a flush"), letters);
    server.script_flush().await;
    assert_eq!(
        store
            .by_message("orders.refund", 10)
            .await
            .expect("by_message"),
        letters
    );
    server.script_flush().await;
    assert_eq!(
        store.take(letters[0].id).await.expect("take after a flush"),
        Some(letters[0].clone())
    );
    server.script_flush().await;
    assert_eq!(
        store.purge_older_than(Duration::ZERO).await.expect("purge"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably_and_then_works_again() {
    if !private_redis::available("dlq_server_down") {
        return;
    }
    for persistence in [Persistence::None, Persistence::AppendOnly] {
        let mut server = PrivateRedis::start(persistence).await;
        let slice = Slice::at_within(&server.url(), "dlq_server_down", RESPONSE_TIMEOUT).await;
        let store = slice.dead_letters().await; // response timeout: 1 s
        let kept = record("orders.refund", now());
        store.put(kept.clone()).await.expect("put");

        server.kill();
        let letter = record("orders.refund", now());
        let mut outcomes: Vec<(&str, Timed)> = Vec::new();
        macro_rules! timed {
            ($name:literal, $op:expr) => {{
                let started = Instant::now();
                let outcome: Result<(), BoxError> = $op;
                outcomes.push(($name, (outcome, started.elapsed())));
            }};
        }
        timed!("put", store.put(letter.clone()).await);
        timed!("list", store.list(10).await.map(drop));
        timed!("take", store.take(letter.id).await.map(drop));
        timed!("count", store.count().await.map(drop));
        timed!(
            "put_many",
            store
                .put_many(std::slice::from_ref(&letter))
                .await
                .map_err(Into::into)
        );
        timed!(
            "by_message",
            store.by_message("x", 1).await.map(drop).map_err(Into::into)
        );
        timed!(
            "purge_older_than",
            store
                .purge_older_than(Duration::ZERO)
                .await
                .map(drop)
                .map_err(Into::into)
        );
        for (operation, (outcome, took)) in outcomes {
            let error = outcome.expect_err(operation);
            assert!(redis_error(&error).is_retryable(), "{operation}: {error:?}");
            assert!(
                took < Duration::from_millis(1500),
                "{operation} failed within the response timeout (1 s): took {took:?}"
            );
        }

        server.restart().await;
        // The connection learns the server dropped it from its next command (which fails,
        // retryable), then works again by itself.
        let count = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match store.count().await {
                    Ok(count) => return count,
                    Err(error) => assert!(redis_error(&error).is_retryable(), "{error:?}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the store works again after the restart");
        match persistence {
            // Nothing was kept across the restart: every dead letter is lost.
            Persistence::None => assert_eq!(count, 0),
            // The append-only file (fsync always) kept what was acknowledged.
            Persistence::AppendOnly => {
                assert_eq!(
                    store.list(10).await.expect("list"),
                    std::slice::from_ref(&kept)
                );
            }
        }
        store
            .put(letter.clone())
            .await
            .expect("put after the restart");
        assert_eq!(store.take(letter.id).await.expect("take"), Some(letter));
    }
}
