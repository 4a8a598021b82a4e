//! Values the store did not write: typed errors naming the key, never a panic, and a claim
//! that goes on past a message it could not read.

use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::schedule::ScheduleStore;
use catga_redis::store::RedisStoreError;
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

use super::common::slice::Slice;
use super::common::store_error::redis_error;
use super::{LONG, claim, message, now, query, token};

/// The serialized value of `key` (`DUMP`).
async fn dump(raw: &mut MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    query(raw, &["DUMP", key]).await
}

/// `Malformed`, naming `key`, and not worth trying again.
fn assert_malformed(what: &str, error: &BoxError, key: &str) {
    let error = redis_error(error);
    assert!(
        matches!(error, RedisStoreError::Malformed { key: k, .. } if k == key),
        "{what}: expected Malformed at `{key}`, got {error:?}"
    );
    assert!(!error.is_retryable(), "{what}: {error} is not retryable");
}

/// Every operation over `garbage` (commands written first, on a fresh prefix, `$msg`, `$due`,
/// `$claims`, `$fence`, `$id` and `$ID` standing for the keys, an id and its upper-case form):
/// `expect` says, for next_due, claim_due, schedule, fired and cancel in turn, the key whose
/// `Malformed` it fails with, or `None` where it works. next_due and the claim leave the
/// garbage as it was.
async fn over_garbage(case: &str, garbage: &[&[&str]], expect: [Option<&str>; 5]) {
    let Some(slice) = Slice::open(&format!("schedule_garbage:{case}")).await else {
        return;
    };
    let store = slice.stores.schedules();
    let mut raw = slice.raw().await;
    let id = Uuid::now_v7();
    let key = store.message_key(id);
    let placed = |arg: &str| {
        arg.replace("$msg", &key)
            .replace("$due", store.due_key())
            .replace("$claims", store.claims_key())
            .replace("$fence", store.fence_key())
            .replace("$id", &id.to_string())
            .replace("$ID", &id.to_string().to_uppercase())
    };
    let mut written = Vec::new();
    for command in garbage {
        let args: Vec<String> = command.iter().map(|a| placed(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _: redis::Value = query(&mut raw, &args).await;
        written.push(args[1].to_owned());
    }
    let mut before = Vec::new();
    for k in &written {
        before.push(dump(&mut raw, k).await);
    }
    let mut again = message(now() - Duration::from_secs(5));
    again.envelope.id = id;
    for (operation, expected) in ["next_due", "claim_due", "schedule", "fired", "cancel"]
        .into_iter()
        .zip(expect)
    {
        let result = match operation {
            "claim_due" => store.claim_due(10, token(1), LONG).await.map(drop),
            "next_due" => store.next_due().await.map(drop),
            "schedule" => store.schedule(&again).await.map(drop),
            "fired" => store.fired(&[], token(1)).await,
            _ => store.cancel(id).await.map(drop),
        };
        match (expected.map(placed), result) {
            (Some(at), Err(error)) => {
                assert_malformed(&format!("{case}: {operation}"), &error, &at);
            }
            (None, Ok(())) => {}
            (expected, result) => {
                panic!("{case}: {operation}: expected Malformed at {expected:?}, got {result:?}")
            }
        }
        if operation == "claim_due" {
            for (k, before) in written.iter().zip(&before) {
                assert_eq!(&dump(&mut raw, k).await, before, "{case}: `{k}` as it was");
            }
        }
    }
    if expect[4].is_none() {
        assert_eq!(dump(&mut raw, &key).await, None, "{case}: cancelled");
    }
}

/// Keys holding what the store never writes: every operation that reads one fails with
/// `Malformed` naming it (never a panic) and writes nothing over it; a cancel of the id clears
/// a message the store cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_store_did_not_write_give_typed_errors_naming_the_key() {
    let (msg, due, claims, fence) = (Some("$msg"), Some("$due"), Some("$claims"), Some("$fence"));
    let fenced = [None, fence, None, fence, None];
    over_garbage("fence_list", &[&["RPUSH", "$fence", "7"]], fenced).await;
    over_garbage("fence_text", &[&["SET", "$fence", "seven"]], fenced).await;
    over_garbage("fence_zero_led", &[&["SET", "$fence", "007"]], fenced).await;
    over_garbage("fence_negative", &[&["SET", "$fence", "-3"]], fenced).await;
    over_garbage("due_string", &[&["SET", "$due", "x"]], [due; 5]).await;
    over_garbage(
        "claims_hash",
        &[&["HSET", "$claims", "a", "b"]],
        [claims; 5],
    )
    .await;
    let claimed = |at| [None, at, None, None, None];
    let not_an_id = &["ZADD", "$due", "0", "garbage"][..];
    over_garbage("member_not_an_id", &[not_an_id], claimed(due)).await;
    over_garbage(
        "member_upper_case",
        &[&["ZADD", "$due", "0", "$ID"]],
        claimed(due),
    )
    .await;
    over_garbage("no_message", &[&["ZADD", "$due", "0", "$id"]], claimed(msg)).await;
    let string = [&["SET", "$msg", "x"][..], &["ZADD", "$due", "0", "$id"]];
    over_garbage("message_string", &string, [None, msg, msg, None, None]).await;
    let fraction = [
        &["HSET", "$msg", "due", "1"][..],
        &["ZADD", "$due", "1.5", "$id"],
    ];
    over_garbage("fractional_score", &fraction, [due, due, None, None, None]).await;
    for (case, fields) in [
        ("no_fields", &["HSET", "$msg", "due", "1"][..]),
        (
            "not_numbered",
            &["HSET", "$msg", "due", "1", "fields", "1", "x", "y"],
        ),
        (
            "no_envelope",
            &[
                "HSET",
                "$msg",
                "due",
                "1",
                "fields",
                "1",
                "0.catga-payload",
                "y",
            ],
        ),
        ("due_text", &["HSET", "$msg", "due", "soon", "fields", "0"]),
    ] {
        let indexed = [fields, &["ZADD", "$due", "1", "$id"]];
        over_garbage(case, &indexed, claimed(msg)).await;
    }
}

/// A claim that takes a message the store cannot read fails naming it; the next claim goes on
/// past it (it is claimed), and a cancel clears it. A message whose due time disagrees with
/// its score in the due index is one the store cannot read either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_goes_on_past_a_message_it_could_not_read() {
    let Some(slice) = Slice::open("schedule_past_garbage").await else {
        return;
    };
    let store = slice.stores.schedules();
    let mut raw = slice.raw().await;
    let at = now() - Duration::from_secs(10);
    let (bad, moved, good) = (message(at), message(at), message(now()));
    for m in [&bad, &moved, &good] {
        assert!(store.schedule(m).await.expect("schedule"));
    }
    let bad_key = store.message_key(bad.id());
    let _: i64 = query(&mut raw, &["HSET", &bad_key, "0.catga-id", "not-a-uuid"]).await;
    let moved_id = moved.id().to_string();
    let _: i64 = query(
        &mut raw,
        &["ZADD", store.due_key(), "XX", "CH", "1", &moved_id],
    )
    .await;

    let error = claim(&store, 1, 1)
        .await
        .expect_err("the first is not the store's");
    assert_malformed(
        "a message edited by hand",
        &error,
        &store.message_key(moved.id()),
    );
    let error = claim(&store, 1, 1)
        .await
        .expect_err("the second is not the store's");
    assert_malformed("a message edited by hand", &error, &bad_key);
    assert_eq!(claim(&store, 10, 1).await.expect("claim"), vec![good.id()]);
    assert!(store.cancel(bad.id()).await.expect("cancel"));
    assert!(store.cancel(moved.id()).await.expect("cancel"));
    store.fired(&[good.id()], token(1)).await.expect("fired");
    assert_eq!(slice.keys().await, [store.fence_key()], "nothing else left");
}
