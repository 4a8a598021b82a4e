//! A server that goes away (killed, then restarted with or without its data) or forgets its
//! scripts: typed, retryable errors while it is down, and the store works again by itself.

use std::time::{Duration, Instant};

use catga_core::store::event::{EventStore, EventStoreError};
use catga_redis::store::RedisEventStore;

use crate::common::outage::{self, RESPONSE_TIMEOUT};
use crate::common::private_redis::Persistence;
use crate::common::round_trips::RoundTrips;
use crate::{event, redis_error};

/// Tries `append` until it succeeds, for at most 15 s: the store reconnects by itself.
async fn append_until_up(store: &RedisEventStore, stream: &str, version: u64) -> Duration {
    outage::until_up(
        async || {
            store
                .append(stream, version, vec![event(version + 1)])
                .await
        },
        |e| redis_error(e).is_retryable(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably_and_then_works_again() {
    let Some((mut server, slice)) =
        outage::private("events_server_down", Persistence::AppendOnly).await
    else {
        return;
    };
    let store = slice.stores.events();
    store.append("order-1", 0, vec![event(1)]).await.unwrap();

    server.kill();
    for round in 0..3 {
        let started = Instant::now();
        let errors = [
            store
                .append("order-1", 1, vec![event(2)])
                .await
                .unwrap_err(),
            store.load("order-1", 0).await.unwrap_err(),
            EventStoreError::backend("log", store.read_all(0, 10).await.unwrap_err()),
        ];
        for error in &errors {
            assert!(
                redis_error(error).is_retryable(),
                "round {round}: a server that is down is worth trying again: {error:?}"
            );
        }
        assert!(
            started.elapsed() < 3 * RESPONSE_TIMEOUT,
            "round {round}: three operations failed within their response timeouts, took {:?}",
            started.elapsed()
        );
    }

    server.restart().await;
    append_until_up(&store, "order-1", 1).await;
    let kept: Vec<u64> = store
        .load("order-1", 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(
        kept,
        [1, 2],
        "with the append-only file (`always`), what was acknowledged is kept"
    );
    let positions: Vec<i64> = store
        .read_all(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(positions, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_script_flush_the_next_append_and_read_succeed_with_two_more_round_trips() {
    let Some((server, slice)) = outage::private("events_script_flush", Persistence::None).await
    else {
        return;
    };
    let proxy = RoundTrips::start(&server.url()).await;
    let store = slice.connect_at(proxy.url()).await.events();
    store.append("order-1", 0, vec![event(1)]).await.unwrap();
    store.read_all(0, 10).await.unwrap();
    server.script_flush().await;
    proxy.reset();
    assert_eq!(store.append("order-1", 1, vec![event(2)]).await.unwrap(), 2);
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
    assert_eq!(
        proxy.names(),
        [
            "EVALSHA", "SCRIPT", "EVALSHA", "EVALSHA", "SCRIPT", "EVALSHA"
        ],
        "each script: NOSCRIPT, loaded, called again"
    );
    assert_eq!(proxy.round_trips(), 6);
    proxy.reset();
    store.append("order-1", 2, vec![event(3)]).await.unwrap();
    assert_eq!(proxy.round_trips(), 1, "then one again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_loses_every_stream_and_positions_start_again() {
    let Some((mut server, slice)) =
        outage::private("events_restart_without_data", Persistence::None).await
    else {
        return;
    };
    let store = slice.stores.events();
    store
        .append("order-1", 0, vec![event(1), event(2)])
        .await
        .unwrap();
    server.kill();
    server.restart().await;
    // What `docs/persistence.md` says: without persistence, everything is gone.
    append_until_up(&store, "order-2", 0).await;
    assert_eq!(store.load("order-1", 0).await.unwrap(), []);
    let all = store.read_all(0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(p, e)| (*p, e.stream.as_str()))
            .collect::<Vec<_>>(),
        [(1, "order-2")],
        "positions start again at 1: a projection's checkpoint from before is past the log"
    );
}
