//! Reads from replicas (`ReadFrom`) against a real primary and replica on free loopback
//! ports: which node served each read is read off each server's `INFO commandstats`.

mod common;

use std::time::Duration;

use catga_core::store::event::{EventStore, NewEvent};
use catga_core::testkit;
use catga_redis::store::{REPLICA_REFRESH, ReadFrom, RedisEventStore, RedisStores};
use common::private_redis::{Persistence, PrivateRedis, available};
use uuid::Uuid;

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
    let (p, r) = (primary.calls("xrange").await, replica.calls("xrange").await);
    let events = store.load(stream, 0).await.expect("load");
    let (p2, r2) = (primary.calls("xrange").await, replica.calls("xrange").await);
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
    // Given by URL: a given replica stays in use whatever the primary lists, and a detached
    // one is no longer listed (`ROLE`), so a found one would be dropped at the next refresh.
    let stores = RedisStores::connect(primary.url())
        .prefix("lag")
        .read_from(ReadFrom::PreferReplica)
        .replica(replica.url())
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

/// Loads `stream` and checks that the primary served it (there is no replica to count on):
/// returns how many events it holds.
async fn served_by_the_primary(
    store: &impl EventStore,
    stream: &str,
    primary: &PrivateRedis,
) -> usize {
    let before = primary.calls("xrange").await;
    let events = store.load(stream, 0).await.expect("load");
    assert_eq!(
        primary.calls("xrange").await,
        before + 1,
        "the primary served the read"
    );
    events.len()
}

/// An event store on `primary` reading from replicas when it can (`given`, else those the
/// primary lists), with no read-your-writes window, after `appended` events were appended to
/// stream `s`.
async fn preferring_replicas(
    primary: &PrivateRedis,
    prefix: &str,
    given: Option<String>,
    appended: u8,
) -> RedisEventStore {
    let mut connect = RedisStores::connect(primary.url())
        .prefix(prefix)
        .read_from(ReadFrom::PreferReplica)
        .read_your_writes_for(Duration::ZERO);
    if let Some(url) = given {
        connect = connect.replica(url);
    }
    let events = connect
        .await
        .expect("connects: `PreferReplica` reads the primary while no replica answers")
        .events();
    events
        .append("s", 0, (1..=appended).map(event).collect())
        .await
        .expect("appended");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_connecting_is_found_and_read_from() {
    if !available("replica_found_later") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    // No replica given, and the primary has none yet.
    let events = preferring_replicas(&primary, "later", None, 2).await;
    assert_eq!(served_by_the_primary(&events, "s", &primary).await, 2);

    let replica = PrivateRedis::start_replica_of(&primary).await;
    replicated(&replica, "*:s*", 2).await;
    testkit::eventually("reads go to the replica the primary now lists", || async {
        served_by(&events, "s", &primary, &replica).await == ("replica", 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_replica_not_running_at_connect_is_read_from_once_it_runs() {
    if !available("replica_given_later") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    // Its port is picked now; nothing listens there yet.
    let mut replica = PrivateRedis::unstarted_replica_of(&primary);
    let events = preferring_replicas(&primary, "given_later", Some(replica.url()), 1).await;
    assert_eq!(served_by_the_primary(&events, "s", &primary).await, 1);

    replica.start_replica(&primary).await;
    replicated(&replica, "*:s*", 1).await;
    testkit::eventually("reads go to the given replica once it runs", || async {
        served_by(&events, "s", &primary, &replica).await == ("replica", 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_primary_no_longer_lists_is_no_longer_read() {
    if !available("replica_unlisted") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let replica = PrivateRedis::start_replica_of(&primary).await;
    let events = preferring_replicas(&primary, "unlisted", None, 1).await;
    replicated(&replica, "*:s*", 1).await;
    assert_eq!(
        served_by(&events, "s", &primary, &replica).await,
        ("replica", 1)
    );
    // Detached, it still answers (with what it has), but the primary no longer lists it.
    let _: String = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut replica.raw().await)
        .await
        .expect("detach the replica");
    testkit::eventually("reads go back to the primary", || async {
        served_by(&events, "s", &primary, &replica).await == ("primary", 1)
    })
    .await;
}

/// How many clients `server` has, counted on `raw` (itself one of them).
async fn clients(raw: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(raw)
        .await
        .expect("CLIENT LIST");
    list.lines().filter(|line| !line.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stores_ends_the_replica_search() {
    if !available("replica_search_ends") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let mut raw = primary.raw().await;
    let alone = clients(&mut raw).await;
    let stores = RedisStores::connect(primary.url())
        .prefix("ends")
        .read_from(ReadFrom::PreferReplica)
        .await
        .expect("connects");
    assert_eq!(clients(&mut raw).await, alone + 1, "the stores' connection");
    // The search holds the primary's connection (for `ROLE`) only while the stores live.
    drop(stores);
    testkit::within(REPLICA_REFRESH * 3, "the stores' connection closes", || {
        let mut raw = raw.clone();
        async move { clients(&mut raw).await == alone }
    })
    .await;
}
