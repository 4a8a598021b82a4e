//! `RedisSagaStore` beyond the conformance suite: one round trip per operation (counted at
//! the wire), the server's clock, an instance moving between sagas, the size limit, garbage
//! in its keys, a server that goes away or forgets its scripts, and a saga run with
//! `run_stored` that is killed and then `recover`ed by a new process.

mod common;
#[path = "store_sagas/faults.rs"]
mod faults;
#[path = "store_sagas/garbage.rs"]
mod garbage;
#[path = "store_sagas/recovery.rs"]
mod recovery;

use std::time::{Duration, SystemTime};

use catga_core::saga::{SagaState, SagaStatus};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError};
use catga_redis::store::RedisStoreError;
use common::round_trips::RoundTrips;
use common::slice::Slice;
use common::store_error::{self, assert_invalid_option, assert_too_large};
use redis::aio::MultiplexedConnection;

fn record(saga: &str, status: SagaStatus) -> SagaRecord {
    let mut state = SagaState::new(saga);
    state.status = status;
    SagaRecord::new(&state, b"{\"cents\":500}".to_vec()).expect("encode the state")
}

/// The store error behind a saga store error.
fn redis_error(error: &SagaStoreError) -> &RedisStoreError {
    let SagaStoreError::Backend { source } = error else {
        panic!("expected a backend error, got {error:?}");
    };
    store_error::redis_error(source)
}

fn assert_malformed(error: &SagaStoreError, what: &str) {
    assert!(
        matches!(redis_error(error), RedisStoreError::Malformed { .. }),
        "{what}: expected a malformed-value error, got {error:?}"
    );
}

/// Sends a command on a raw connection, panicking if the server refuses it.
async fn raw(conn: &mut MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async::<redis::Value>(conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let Some(slice) = Slice::open("sagas_round_trips").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice.connect_at(proxy.url()).await.sagas();
    // The first call of each script on a fresh server loads it (NOSCRIPT, SCRIPT LOAD).
    let warm = record("warm", SagaStatus::Running);
    store.save(&warm, 0).await.unwrap();
    store.unfinished("warm", None, 1).await.unwrap();
    store.delete(warm.id).await.unwrap();

    let running = record("checkout", SagaStatus::Running);
    let done = SagaRecord {
        status: SagaStatus::Completed,
        ..running.clone()
    };
    let mut measured = Vec::new();
    let mut measure = |operation: &'static str, expected: &'static str| {
        measured.push((
            operation,
            expected,
            proxy.round_trips(),
            proxy.commands(),
            proxy.names(),
        ));
        proxy.reset();
    };
    proxy.reset();
    assert_eq!(store.save(&running, 0).await.unwrap(), 1);
    measure("save a new instance", "EVALSHA");
    assert!(store.save(&running, 0).await.unwrap_err().is_conflict());
    measure("a stale save", "EVALSHA");
    assert_eq!(store.load(running.id).await.unwrap().unwrap().version, 1);
    measure("load", "HMGET");
    assert_eq!(
        store.unfinished("checkout", None, 10).await.unwrap().len(),
        1
    );
    measure("unfinished", "EVALSHA");
    assert_eq!(store.save(&done, 1).await.unwrap(), 2);
    measure("save it finished", "EVALSHA");
    assert!(store.delete(running.id).await.unwrap());
    measure("delete", "EVALSHA");
    assert!(!store.delete(running.id).await.unwrap());
    measure("delete what is gone", "EVALSHA");
    assert_eq!(store.load(running.id).await.unwrap(), None);
    measure("load what is gone", "HMGET");
    for (operation, expected, round_trips, commands, names) in measured {
        assert_eq!(
            (round_trips, commands),
            (1, 1),
            "{operation}: one round trip, one command; sent {names:?}"
        );
        assert_eq!(names, [expected], "{operation}");
    }
}

/// The server's clock, to the microsecond.
async fn server_time(conn: &mut MultiplexedConnection) -> SystemTime {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_at_is_the_servers_clock_in_whole_microseconds() {
    let Some(slice) = Slice::open("sagas_clock").await else {
        return;
    };
    let store = slice.sagas().await;
    let mut conn = slice.raw().await;
    let running = record("checkout", SagaStatus::Running);
    let before = server_time(&mut conn).await;
    store.save(&running, 0).await.unwrap();
    let after = server_time(&mut conn).await;
    let stored = store.load(running.id).await.unwrap().unwrap();
    assert!(
        before <= stored.updated_at && stored.updated_at <= after,
        "{before:?} <= {:?} <= {after:?}",
        stored.updated_at
    );
    let since = stored
        .updated_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(since.subsec_nanos() % 1000, 0, "whole microseconds");
    // The cutoff is exact to the microsecond: saved at `t`, it is before `t + 1 µs`.
    let listed = |cutoff| {
        let store = store.clone();
        async move {
            store
                .unfinished("checkout", Some(cutoff), 10)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(listed(stored.updated_at).await, 0);
    assert_eq!(listed(stored.updated_at + Duration::from_nanos(1)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_saved_under_another_saga_moves_to_its_index() {
    let Some(slice) = Slice::open("sagas_renamed").await else {
        return;
    };
    let store = slice.sagas().await;
    let first = record("checkout", SagaStatus::Running);
    store.save(&first, 0).await.unwrap();
    let moved = SagaRecord {
        saga: "refund".into(),
        ..first.clone()
    };
    store.save(&moved, 1).await.unwrap();
    assert_eq!(store.unfinished("checkout", None, 10).await.unwrap(), []);
    let listed = store.unfinished("refund", None, 10).await.unwrap();
    assert_eq!((listed[0].record.id, listed[0].version), (first.id, 2));
    assert!(store.delete(first.id).await.unwrap());
    assert_eq!(store.unfinished("refund", None, 10).await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_write_bytes_is_refused_before_anything_is_sent() {
    let Some(slice) = Slice::open("sagas_too_large").await else {
        return;
    };
    let proxy = RoundTrips::start(&slice.url).await;
    let store = slice
        .connect_at(proxy.url())
        .await
        .sagas()
        .max_write_bytes(1024)
        .unwrap();
    let mut big = record("checkout", SagaStatus::Running);
    big.data = vec![0; 1024];
    proxy.reset();
    let error = store.save(&big, 0).await.unwrap_err();
    assert_too_large(redis_error(&error), 1024);
    assert_eq!(proxy.commands(), 0, "nothing was sent");
    assert_eq!(store.load(big.id).await.unwrap(), None);
    for bytes in [0, 512 * 1024 * 1024 + 1] {
        let refused = slice.sagas().await.max_write_bytes(bytes).unwrap_err();
        assert_invalid_option(&refused, "max_write_bytes");
    }
}
