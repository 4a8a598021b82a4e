//! Values the store did not write, a `SCRIPT FLUSH`, and a server that goes away.

use std::time::{Duration, Instant};

use catga_core::error::BoxError;
use catga_core::store::idempotency::{Claim, IdempotencyStore, ReplyKey};
use catga_redis::store::RedisIdempotencyStore;
use redis::aio::MultiplexedConnection;

use super::common::outage;
use super::common::private_redis::Persistence;
use super::common::round_trips::RoundTrips;
use super::{
    LONG, REPLY, RESPONSE_TIMEOUT, Slice, assert_not_ours, completed, cost, duplicate, fresh,
    redis_error,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_store_did_not_write_gives_a_typed_error_and_is_left_as_it_was() {
    let Some(slice) = Slice::open_within("idem_garbage", RESPONSE_TIMEOUT).await else {
        return;
    };
    let store = slice.idempotency().await;
    let mut raw = slice.raw().await;
    // Another type; a string with another tag; an empty (truncated) one; a holder with more.
    let garbage: [(&str, &[&str]); 5] = [
        ("hash", &["HSET", "f", "v"]),
        ("list", &["RPUSH", "x"]),
        ("string", &["SET", "garbage"]),
        ("truncated", &["SET", ""]),
        ("holder with a tail", &["SET", "Hxyz"]),
    ];
    for (what, command) in garbage {
        let key = fresh();
        let name = store.key_of(&key);
        let mut write = redis::cmd(command[0]);
        write.arg(&name).arg(&command[1..]);
        let _: redis::Value = write.query_async(&mut raw).await.expect("write garbage");
        let dumped = |raw: &mut MultiplexedConnection| {
            let name = name.clone();
            let mut raw = raw.clone();
            async move {
                let dump: Option<Vec<u8>> = redis::cmd("DUMP")
                    .arg(&name)
                    .query_async(&mut raw)
                    .await
                    .expect("DUMP");
                dump
            }
        };
        let before = dumped(&mut raw).await;

        let claim = store.claim(&key, LONG).await.expect_err("claim");
        assert_not_ours(&format!("claim of a {what}"), redis_error(&claim));
        let complete = store
            .complete(&key, REPLY, LONG)
            .await
            .expect_err("complete");
        assert_not_ours(&format!("complete of a {what}"), redis_error(&complete));
        let release = store.release(&key).await.expect_err("release");
        assert_not_ours(&format!("release of a {what}"), redis_error(&release));
        let wait = store.wait(&key, LONG).await.expect_err("wait");
        assert_not_ours(&format!("wait for a {what}"), redis_error(&wait));
        let many = store
            .claim_many(std::slice::from_ref(&key), LONG)
            .await
            .expect_err("claim_many");
        assert_not_ours(&format!("claim_many of a {what}"), &many);
        let many = store
            .complete_many(&[(&key, REPLY)], LONG)
            .await
            .expect_err("complete_many");
        assert_not_ours(&format!("complete_many of a {what}"), &many);
        assert_eq!(
            dumped(&mut raw).await,
            before,
            "the {what} is left as it was"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_flush_in_the_middle_of_a_run_is_recovered_by_reloading() {
    // On a server of its own: a `SCRIPT FLUSH` of the shared one would hit other tests.
    let Some((server, slice)) = outage::private("idem_script_flush", Persistence::None).await
    else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.idempotency();
    let key = fresh();
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        Claim::Claimed
    );
    server.script_flush().await;
    proxy.reset();
    store
        .complete(&key, REPLY, LONG)
        .await
        .expect("complete after a flush");
    assert_eq!(
        proxy.names(),
        ["EVALSHA", "SCRIPT", "EVALSHA"],
        "NOSCRIPT, load, call again"
    );
    server.script_flush().await;
    assert_eq!(
        store.claim(&key, LONG).await.expect("claim"),
        completed(REPLY)
    );

    let keys: Vec<ReplyKey> = (0..4).map(|_| fresh()).collect();
    server.script_flush().await;
    proxy.reset();
    let claims = store
        .claim_many(&keys, LONG)
        .await
        .expect("claim_many after a flush");
    assert_eq!(
        claims,
        vec![Claim::Claimed; 4],
        "each key claimed once, not twice"
    );
    assert_eq!(
        cost(&proxy),
        (2, 9),
        "the pipeline, then SCRIPT LOAD and the calls again"
    );
    server.script_flush().await;
    let completions: Vec<(&ReplyKey, &[u8])> = keys.iter().map(|k| (k, REPLY)).collect();
    store
        .complete_many(&completions, LONG)
        .await
        .expect("complete_many after a flush");
    server.script_flush().await;
    store
        .release(&fresh())
        .await
        .expect("release after a flush");
    server.script_flush().await;
    store
        .wait(&fresh(), LONG)
        .await
        .expect("wait after a flush");
    assert_eq!(
        store.claim_many(&keys, LONG).await.expect("claim_many"),
        vec![completed(REPLY); 4]
    );
}

/// Every operation, each returning whether it failed with a retryable error and how long it
/// took.
async fn every_operation(
    store: &RedisIdempotencyStore,
) -> Vec<(&'static str, Result<(), BoxError>, Duration)> {
    let key = fresh();
    let mut outcomes = Vec::new();
    macro_rules! timed {
        ($name:literal, $op:expr) => {{
            let started = Instant::now();
            let outcome: Result<(), BoxError> = $op;
            outcomes.push(($name, outcome, started.elapsed()));
        }};
    }
    timed!("claim", store.claim(&key, LONG).await.map(drop));
    timed!("complete", store.complete(&key, REPLY, LONG).await);
    timed!("release", store.release(&key).await);
    timed!("wait", store.wait(&key, LONG).await);
    timed!(
        "claim_many",
        store
            .claim_many(std::slice::from_ref(&key), LONG)
            .await
            .map(drop)
            .map_err(Into::into)
    );
    timed!(
        "complete_many",
        store
            .complete_many(&[(&key, REPLY)], LONG)
            .await
            .map_err(Into::into)
    );
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably_and_then_works_again() {
    let Some((mut server, slice)) = outage::private("idem_server_down", Persistence::None).await
    else {
        return;
    };
    let store = slice.idempotency().await; // response timeout: 1 s
    let observer = slice
        .idempotency()
        .await
        .poll_interval(Duration::from_secs(300))
        .expect("valid");
    for (name, outcome, _) in every_operation(&store).await {
        outcome.unwrap_or_else(|e| panic!("{name} while the server is up: {e}"));
    }
    observer
        .wait(&fresh(), LONG)
        .await
        .expect("open the observer's subscriber");

    server.kill();
    for (name, outcome, took) in every_operation(&store).await {
        let error = outcome.expect_err(name);
        let error = redis_error(&error);
        assert!(error.is_retryable(), "{name}: {error:?} is retryable");
        assert!(
            took < Duration::from_millis(1500),
            "{name} failed within the response timeout (1 s): took {took:?}"
        );
    }

    server.restart().await;
    // A connection learns that the server dropped it from its next command, which fails
    // (retryable) and reconnects: each store works again by itself from then on.
    for instance in [&store, &observer] {
        let back = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match instance.claim(&fresh(), LONG).await {
                    Ok(_) => return,
                    Err(error) => assert!(redis_error(&error).is_retryable(), "{error:?}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            back.is_ok(),
            "the store works again by itself after the restart"
        );
    }
    for (name, outcome, _) in every_operation(&store).await {
        outcome.unwrap_or_else(|e| panic!("{name} after the restart: {e}"));
    }
    // The subscriber is back too: a waiter with a poll interval of 300 s is woken by the
    // completion (or, once, by its subscriber connecting again, and then by the completion).
    let key = fresh();
    store.claim(&key, LONG).await.expect("claim");
    let waiter = duplicate(observer, &key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.complete(&key, REPLY, LONG).await.expect("complete");
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("a waiter is woken by a completion after the restart")
        .expect("the waiting task");
    assert_eq!(outcome, completed(REPLY));
}
