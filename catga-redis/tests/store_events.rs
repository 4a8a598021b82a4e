//! `RedisEventStore` beyond the conformance suite: one round trip per operation (counted at
//! the wire), the global log `read_all` in one gap-free order while writers append, the size
//! limit, garbage in its keys, a server that goes away or forgets its scripts, and an
//! aggregate saved through a `Repository`.

#[path = "store_events/aggregate.rs"]
mod aggregate;
mod common;
#[path = "store_events/faults.rs"]
mod faults;
#[path = "store_events/garbage.rs"]
mod garbage;

use std::time::{Duration, Instant};

use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use catga_redis::store::RedisStoreError;
use common::round_trips::RoundTrips;
use common::slice::Slice;
use common::store_error::{self, assert_invalid_option, assert_too_large};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent::new("Counted", format!("{{\"n\":{n}}}").into_bytes())
}

/// Every byte value, in a run that is no text.
fn every_byte() -> Vec<u8> {
    (0..=255u8).rev().chain(0..=255).collect()
}

/// The store error behind an event store error.
fn redis_error(error: &EventStoreError) -> &RedisStoreError {
    let EventStoreError::Backend { source, .. } = error else {
        panic!("expected a backend error, got {error:?}");
    };
    store_error::redis_error(source)
}

fn assert_malformed(error: &EventStoreError, what: &str) {
    assert_malformed_value(redis_error(error), what);
}

fn assert_malformed_value(error: &RedisStoreError, what: &str) {
    assert!(
        matches!(error, RedisStoreError::Malformed { .. }),
        "{what}: expected a malformed-value error, got {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(slice) = Slice::open("events_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.events();
    // The first call of each script on a fresh server loads it (NOSCRIPT, SCRIPT LOAD).
    store.append("warm", 0, vec![event(0)]).await.unwrap();
    store.read_all(0, 1).await.unwrap();

    let batch: Vec<NewEvent> = (1..=200).map(event).collect();
    let stale = vec![event(0)];
    let measured: Vec<(&str, usize, usize, Vec<String>)> = vec![
        {
            proxy.reset();
            store.append("order-1", 0, vec![event(1)]).await.unwrap();
            (
                "append 1 event",
                proxy.round_trips(),
                proxy.commands(),
                proxy.names(),
            )
        },
        {
            proxy.reset();
            assert_eq!(store.append("order-1", 1, batch).await.unwrap(), 201);
            (
                "append 200 events",
                proxy.round_trips(),
                proxy.commands(),
                proxy.names(),
            )
        },
        {
            proxy.reset();
            assert_eq!(store.append("order-1", 201, vec![]).await.unwrap(), 201);
            (
                "append no event",
                proxy.round_trips(),
                proxy.commands(),
                proxy.names(),
            )
        },
        {
            proxy.reset();
            let conflict = store.append("order-1", 7, stale).await.unwrap_err();
            assert!(conflict.is_conflict());
            (
                "a stale append",
                proxy.round_trips(),
                proxy.commands(),
                proxy.names(),
            )
        },
        {
            proxy.reset();
            assert_eq!(store.load("order-1", 0).await.unwrap().len(), 201);
            ("load", proxy.round_trips(), proxy.commands(), proxy.names())
        },
        {
            proxy.reset();
            assert_eq!(store.read_all(0, 500).await.unwrap().len(), 202);
            (
                "read_all",
                proxy.round_trips(),
                proxy.commands(),
                proxy.names(),
            )
        },
    ];
    for (operation, round_trips, commands, names) in measured {
        assert_eq!(
            (round_trips, commands),
            (1, 1),
            "{operation}: one round trip, one command; sent {names:?}"
        );
        let expected = if operation == "load" {
            "XRANGE"
        } else {
            "EVALSHA"
        };
        assert_eq!(names, [expected], "{operation}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_gives_every_stream_in_append_order_with_gap_free_positions() {
    let Some(slice) = Slice::open("events_read_all").await else {
        return;
    };
    let store = slice.events().await;
    let binary = NewEvent::new("Binary", every_byte())
        .with_causation(Some(Uuid::now_v7()), Some(Uuid::now_v7()));
    store
        .append("a", 0, vec![event(1), event(2)])
        .await
        .unwrap();
    store.append("b", 0, vec![binary.clone()]).await.unwrap();
    store.append("a", 2, vec![event(3)]).await.unwrap();

    let all = store.read_all(0, 100).await.unwrap();
    let order: Vec<(i64, &str, u64)> = all
        .iter()
        .map(|(p, e)| (*p, e.stream.as_str(), e.version))
        .collect();
    assert_eq!(order, [(1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3)]);
    let (_, read) = &all[2];
    assert!(
        read.payload == binary.payload,
        "every byte value, byte for byte"
    );
    assert_eq!(
        (read.event_id, read.correlation_id, read.causation_id),
        (binary.event_id, binary.correlation_id, binary.causation_id)
    );
    assert_eq!(
        all.iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<StoredEvent>>()[..2],
        store.load("a", 1).await.unwrap()[..2],
        "the log gives the events `load` gives"
    );

    let after = |after, limit| {
        let store = store.clone();
        async move {
            let read = store.read_all(after, limit).await.unwrap();
            read.into_iter().map(|(p, _)| p).collect::<Vec<i64>>()
        }
    };
    assert_eq!(after(2, 10).await, [3, 4], "after a position");
    assert_eq!(after(1, 2).await, [2, 3], "up to the limit");
    assert_eq!(after(-7, 1).await, [1], "before the start");
    assert_eq!(after(4, 10).await, Vec::<i64>::new(), "after the last");
    assert_eq!(after(0, 0).await, Vec::<i64>::new(), "a limit of 0");
    assert_eq!(after(i64::MAX, 10).await, Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_polling_while_writers_append_never_skips_a_position() {
    let Some(slice) = Slice::open("events_read_all_concurrent").await else {
        return;
    };
    let store = slice.events().await;
    const WRITERS: u64 = 6;
    const APPENDS: u64 = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut version = 0;
                for n in 0..APPENDS {
                    // Batches of 1 to 3 events, to the writer's stream and to one all share.
                    let batch: Vec<NewEvent> = (0..=(n % 3)).map(|i| event(w * 1000 + i)).collect();
                    version = store
                        .append(&format!("own-{w}"), version, batch)
                        .await
                        .unwrap();
                    loop {
                        let shared = store.load("shared", 0).await.unwrap().len() as u64;
                        match store.append("shared", shared, vec![event(w)]).await {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => continue,
                            Err(e) => panic!("append to the shared stream: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let expected = WRITERS * (APPENDS + (0..APPENDS).map(|n| n % 3 + 1).sum::<u64>());

    let mut seen: Vec<(i64, StoredEvent)> = Vec::new();
    let mut last = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.len() as u64) < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected}",
            seen.len()
        );
        let batch = store.read_all(last, 7).await.unwrap();
        for (i, (position, _)) in batch.iter().enumerate() {
            assert_eq!(
                *position,
                last + 1 + i as i64,
                "a read after {last} gives the next positions with no gap"
            );
        }
        if let Some((position, _)) = batch.last() {
            last = *position;
        }
        seen.extend(batch);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(store.read_all(last, 10).await.unwrap().is_empty());
    // Each stream's events appear in the log in version order, each once, as `load` has them.
    let mut streams: Vec<String> = (0..WRITERS).map(|w| format!("own-{w}")).collect();
    streams.push("shared".into());
    for stream in streams {
        let logged: Vec<StoredEvent> = seen
            .iter()
            .filter(|(_, e)| e.stream == stream)
            .map(|(_, e)| e.clone())
            .collect();
        assert_eq!(logged, store.load(&stream, 0).await.unwrap(), "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_over_max_write_bytes_is_refused_before_anything_is_sent() {
    let Some(slice) = Slice::open("events_too_large").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice
        .connect_at(proxy.url())
        .await
        .events()
        .max_write_bytes(1024)
        .unwrap();
    proxy.reset();
    let big = vec![event(1), NewEvent::new("Big", vec![7u8; 1024])];
    let error = store.append("order-1", 0, big).await.unwrap_err();
    assert_too_large(redis_error(&error), 1024);
    assert_eq!(proxy.commands(), 0, "nothing was sent");
    assert_eq!(store.load("order-1", 0).await.unwrap(), []);
    let fits = vec![NewEvent::new("Small", vec![7u8; 1000])];
    assert_eq!(store.append("order-1", 0, fits).await.unwrap(), 1);

    for bytes in [0, 512 * 1024 * 1024 + 1] {
        let refused = slice.events().await.max_write_bytes(bytes).unwrap_err();
        assert_invalid_option(&refused, "max_write_bytes");
    }
}

/// Sends a command on a raw connection, panicking if the server refuses it.
async fn raw(conn: &mut MultiplexedConnection, args: &[&[u8]]) {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async::<redis::Value>(conn).await.unwrap();
}
