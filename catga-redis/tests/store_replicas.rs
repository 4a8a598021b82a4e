//! Reads from replicas (`ReadFrom`) against a real primary and replica on free loopback
//! ports: which node served each read is read off each server's `INFO commandstats`.

mod common;

use std::time::Duration;

use catga_core::store::event::{EventStore, NewEvent};
use catga_core::testkit;
use catga_redis::store::{ReadFrom, RedisStores};
use common::private_redis::{Persistence, PrivateRedis, available};
use uuid::Uuid;

/// How many times `server` ran `command` (lower case, e.g. `xrange`).
async fn calls(server: &PrivateRedis, command: &str) -> u64 {
    let mut raw = server.raw().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn event(n: u8) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Noted".to_string(),
        payload: vec![n],
        correlation_id: None,
        causation_id: None,
    }
}

/// Which node served the next `load` of `stream`: `"primary"` or `"replica"`.
async fn served_by(
    store: &impl EventStore,
    stream: &str,
    primary: &PrivateRedis,
    replica: &PrivateRedis,
) -> (&'static str, usize) {
    let (p, r) = (
        calls(primary, "xrange").await,
        calls(replica, "xrange").await,
    );
    let events = store.load(stream, 0).await.expect("load");
    let (p2, r2) = (
        calls(primary, "xrange").await,
        calls(replica, "xrange").await,
    );
    match (p2 - p, r2 - r) {
        (1, 0) => ("primary", events.len()),
        (0, 1) => ("replica", events.len()),
        other => panic!("one node should have served the read: {other:?}"),
    }
}

/// Waits until the replica holds `count` events of `stream`.
async fn replicated(replica: &PrivateRedis, key_pattern: &str, count: usize) {
    let raw = replica.raw().await;
    testkit::eventually("the replica has the events", || {
        let mut raw = raw.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(key_pattern)
                .query_async(&mut raw)
                .await
                .unwrap_or_default();
            let Some(key) = keys.first() else {
                return false;
            };
            let len: usize = redis::cmd("XLEN")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap_or(0);
            len >= count
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_except_right_after_this_process_wrote_and_fall_back_when_it_dies()
{
    if !available("replica_reads") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let mut replica = PrivateRedis::start_replica_of(&primary).await;
    let window = Duration::from_millis(300);
    let stores = RedisStores::connect(primary.url())
        .prefix("replicas")
        .read_from(ReadFrom::PreferReplica)
        .replica(replica.url())
        .read_your_writes_for(window)
        .await
        .expect("connects");
    let events = stores.events();
    events
        .append("order-1", 0, vec![event(1), event(2)])
        .await
        .expect("appended");
    // Read-your-writes: the stream was just written here, so the primary answers.
    assert_eq!(
        served_by(&events, "order-1", &primary, &replica).await,
        ("primary", 2)
    );
    replicated(&replica, "*order-1*", 2).await;
    tokio::time::sleep(window * 2).await;
    assert_eq!(
        served_by(&events, "order-1", &primary, &replica).await,
        ("replica", 2),
        "past the window, the replica serves the read"
    );

    // The replica dies: the read is served by the primary, without an error.
    replica.kill();
    let got = events
        .load("order-1", 0)
        .await
        .expect("served by the primary");
    assert_eq!(got.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_serves_old_values_only_outside_the_read_your_writes_window() {
    if !available("replica_lag") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let replica = PrivateRedis::start_replica_of(&primary).await;
    let window = Duration::from_millis(300);
    // No replica given: the primary lists it (`ROLE`).
    let stores = RedisStores::connect(primary.url())
        .prefix("lag")
        .read_from(ReadFrom::PreferReplica)
        .read_your_writes_for(window)
        .await
        .expect("connects");
    let events = stores.events();
    events.append("s", 0, vec![event(1)]).await.expect("first");
    replicated(&replica, "*:s*", 1).await;
    // The replica stops following the primary: from now on it lags without bound.
    let mut raw = replica.raw().await;
    let _: String = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut raw)
        .await
        .expect("detach the replica");
    events.append("s", 1, vec![event(2)]).await.expect("second");
    assert_eq!(
        served_by(&events, "s", &primary, &replica).await,
        ("primary", 2),
        "right after the write, the fresh value"
    );
    tokio::time::sleep(window * 2).await;
    assert_eq!(
        served_by(&events, "s", &primary, &replica).await,
        ("replica", 1),
        "outside the window a lagging replica answers with what it has"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_only_reads_fail_with_a_typed_error_when_no_replica_answers() {
    if !available("replica_only") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let mut replica = PrivateRedis::start_replica_of(&primary).await;
    let stores = RedisStores::connect(primary.url())
        .prefix("only")
        .read_from(ReadFrom::Replica)
        .replica(replica.url())
        .read_your_writes_for(Duration::ZERO)
        .response_timeout(Duration::from_millis(500))
        .await
        .expect("connects");
    let events = stores.events();
    events
        .append("s", 0, vec![event(1)])
        .await
        .expect("written to the primary");
    replicated(&replica, "*:s*", 1).await;
    assert_eq!(
        events.load("s", 0).await.expect("from the replica").len(),
        1
    );
    replica.kill();
    let error = events
        .load("s", 0)
        .await
        .expect_err("no replica answers, and reads may not go to the primary");
    let shown = format!("{error:?}");
    assert!(shown.contains("Command"), "a typed command error: {shown}");
}
