//! Garbage in the event store's keys, written with a raw client: every operation returns a
//! typed error, never panics, and a refused append writes nothing.

use catga_core::store::event::EventStore;
use uuid::Uuid;

use crate::{Slice, assert_malformed, assert_malformed_value, event, raw, redis_error};
use catga_redis::store::RedisStoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_keys_is_a_typed_error_never_a_panic() {
    let Some(slice) = Slice::open("events_garbage").await else {
        return;
    };
    let store = slice.events().await;
    let mut conn = slice.raw().await;
    let (log, position) = (store.log_key().to_owned(), store.position_key().to_owned());
    let key = |stream: &str| store.stream_key(stream);

    // A stream's key holding a string.
    raw(&mut conn, &[b"SET", key("string").as_bytes(), b"x"]).await;
    assert_malformed(
        &store.append("string", 0, vec![event(1)]).await.unwrap_err(),
        "append",
    );
    assert_malformed(&store.load("string", 0).await.unwrap_err(), "load");

    // A stream whose entries are not the store's: bad ids, missing or unreadable fields.
    let good = |id: &str| -> Vec<Vec<u8>> {
        let mut args: Vec<Vec<u8>> = vec![b"XADD".to_vec(), key("bad").into_bytes(), id.into()];
        for (f, v) in [
            ("id", Uuid::now_v7().to_string()),
            ("type", "T".into()),
            ("payload", "p".into()),
            ("correlation", String::new()),
            ("causation", String::new()),
            ("at", "1700000000000000".into()),
        ] {
            args.push(f.into());
            args.push(v.into());
        }
        args
    };
    // (what, which argument of `good`'s `XADD`, what it becomes)
    let cases: [(&str, usize, &[u8]); 6] = [
        ("an id of another shape", 2, b"1-1"),
        ("no type", 5, b"kind"),
        ("a type that is not UTF-8", 6, b"\xff"),
        ("an id that is no UUID", 4, b"42"),
        ("a correlation id that is no UUID", 10, b"x"),
        ("a time that is no number", 14, b"noon"),
    ];
    for (what, at, bad) in cases {
        raw(&mut conn, &[b"DEL", key("bad").as_bytes()]).await;
        let mut args = good("1-0");
        args[at] = bad.to_vec();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        raw(&mut conn, &args).await;
        assert_malformed(&store.load("bad", 0).await.unwrap_err(), what);
    }
    // A stream with a gap, and one with ids by time (a foreign producer's `XADD *`).
    raw(&mut conn, &[b"DEL", key("bad").as_bytes()]).await;
    for id in ["1-0", "3-0"] {
        let args = good(id);
        raw(
            &mut conn,
            &args.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        )
        .await;
    }
    assert_malformed(&store.load("bad", 0).await.unwrap_err(), "a gap");
    raw(&mut conn, &[b"DEL", key("bad").as_bytes()]).await;
    let args = good("*");
    raw(
        &mut conn,
        &args.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    )
    .await;
    assert_malformed(&store.load("bad", 0).await.unwrap_err(), "ids by time");
    let foreign = store.append("bad", 1, vec![event(1)]).await.unwrap_err();
    assert!(
        matches!(redis_error(&foreign), RedisStoreError::Command { .. }),
        "the server refuses the append's first write: {foreign:?}"
    );

    // The counter and the log: an append checks them before writing anything.
    let refused_append = |what: &'static str| {
        let store = store.clone();
        async move {
            assert_malformed(
                &store.append("fine", 0, vec![event(1)]).await.unwrap_err(),
                what,
            );
            assert_eq!(
                store.load("fine", 0).await.unwrap(),
                [],
                "{what}: nothing written"
            );
        }
    };
    raw(&mut conn, &[b"HSET", position.as_bytes(), b"f", b"v"]).await;
    refused_append("a counter of another type").await;
    raw(&mut conn, &[b"DEL", position.as_bytes()]).await;
    raw(&mut conn, &[b"SET", position.as_bytes(), b"twelve"]).await;
    refused_append("a counter that is no number").await;
    raw(&mut conn, &[b"SET", position.as_bytes(), b"007"]).await;
    refused_append("a counter `INCRBY` would refuse").await;
    raw(&mut conn, &[b"SET", position.as_bytes(), b"1"]).await;
    raw(
        &mut conn,
        &[b"XADD", log.as_bytes(), b"5-0", b"s", b"fine", b"v", b"1"],
    )
    .await;
    refused_append("a log ahead of the counter").await;
    raw(&mut conn, &[b"DEL", log.as_bytes(), position.as_bytes()]).await;
    raw(&mut conn, &[b"LPUSH", log.as_bytes(), b"x"]).await;
    refused_append("a log of another type").await;
    assert_malformed_value(
        &store.read_all(0, 10).await.unwrap_err(),
        "read_all of a list",
    );

    // Log entries the store did not write.
    let entries: [[&[u8]; 4]; 4] = [
        [b"stream", b"a", b"v", b"1"],
        [b"s", b"nowhere", b"v", b"1"],
        [b"s", b"bad", b"v", b"one"],
        [b"s", b"string", b"v", b"1"],
    ];
    for fields in entries {
        raw(&mut conn, &[b"DEL", log.as_bytes()]).await;
        let mut args = vec![&b"XADD"[..], log.as_bytes(), b"1-0"];
        args.extend_from_slice(&fields);
        raw(&mut conn, &args).await;
        assert_malformed_value(
            &store.read_all(0, 10).await.unwrap_err(),
            "a log entry naming no event of the store",
        );
    }
}
