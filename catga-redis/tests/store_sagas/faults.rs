//! A server that goes away (killed, then restarted with or without its data) or forgets its
//! scripts: typed, retryable errors while it is down, and the store works again by itself.

use std::time::Instant;

use catga_core::saga::SagaStatus;
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError};
use catga_redis::store::RedisSagaStore;

use crate::common::outage::{self, RESPONSE_TIMEOUT};
use crate::common::private_redis::Persistence;
use crate::common::round_trips::RoundTrips;
use crate::{record, redis_error};

/// Tries `save` until it succeeds, for at most 15 s: the store reconnects by itself.
async fn save_until_up(store: &RedisSagaStore, record: &SagaRecord, version: u64) {
    outage::until_up(
        async || store.save(record, version).await,
        |e| redis_error(e).is_retryable(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_every_operation_fails_retryably_and_then_works_again() {
    let Some((mut server, slice)) =
        outage::private("sagas_server_down", Persistence::AppendOnly).await
    else {
        return;
    };
    let store = slice.stores.sagas();
    let running = record("checkout", SagaStatus::Running);
    store.save(&running, 0).await.unwrap();

    server.kill();
    for round in 0..3 {
        let started = Instant::now();
        let errors = [
            store.save(&running, 1).await.unwrap_err(),
            store.load(running.id).await.unwrap_err(),
            store.unfinished("checkout", None, 10).await.unwrap_err(),
            store.delete(running.id).await.unwrap_err(),
        ];
        for error in &errors {
            assert!(
                redis_error(error).is_retryable(),
                "round {round}: a server that is down is worth trying again: {error:?}"
            );
        }
        assert!(
            started.elapsed() < 4 * RESPONSE_TIMEOUT,
            "round {round}: four operations failed within their response timeouts, took {:?}",
            started.elapsed()
        );
    }

    server.restart().await;
    save_until_up(&store, &running, 1).await;
    let stored = store
        .load(running.id)
        .await
        .unwrap()
        .expect("kept by the append-only file");
    assert_eq!(stored.version, 2);
    assert_eq!(
        store.unfinished("checkout", None, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_script_flush_the_next_save_succeeds_with_two_more_round_trips() {
    let Some((server, slice)) = outage::private("sagas_script_flush", Persistence::None).await
    else {
        return;
    };
    let proxy = RoundTrips::start(&server.url()).await;
    let store = slice.connect_at(proxy.url()).await.sagas();
    let running = record("checkout", SagaStatus::Running);
    store.save(&running, 0).await.unwrap();
    server.script_flush().await;
    proxy.reset();
    assert_eq!(store.save(&running, 1).await.unwrap(), 2);
    assert_eq!(
        proxy.names(),
        ["EVALSHA", "SCRIPT", "EVALSHA"],
        "NOSCRIPT, load, again"
    );
    assert_eq!(proxy.round_trips(), 3);
    proxy.reset();
    assert_eq!(store.save(&running, 2).await.unwrap(), 3);
    assert_eq!(proxy.round_trips(), 1, "then one again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_loses_every_instance() {
    let Some((mut server, slice)) =
        outage::private("sagas_restart_without_data", Persistence::None).await
    else {
        return;
    };
    let store = slice.stores.sagas();
    let running = record("checkout", SagaStatus::Running);
    store.save(&running, 0).await.unwrap();
    server.kill();
    server.restart().await;
    // What `docs/persistence.md` says: the instance is gone, so its runner's next save is a
    // conflict with version 0 (it stops), and recovery finds nothing.
    let other = record("checkout", SagaStatus::Running);
    save_until_up(&store, &other, 0).await;
    let lost = store.save(&running, 1).await.unwrap_err();
    assert!(
        matches!(lost, SagaStoreError::Conflict { actual: 0, .. }),
        "{lost:?}"
    );
    assert_eq!(store.load(running.id).await.unwrap(), None);
    let listed = store.unfinished("checkout", None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.record.id).collect::<Vec<_>>(),
        [other.id]
    );
}
