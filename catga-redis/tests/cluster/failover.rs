//! A failover: a cluster of three primaries with a replica each, of its own (not the shared
//! one); the replica of the node holding the event store's slot takes over
//! (`CLUSTER FAILOVER`). The stores and a serving instance go on: commands during the
//! switch may fail with retryable errors, none after it, and nothing written before is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use catga_core::store::event::{EventStore, EventStoreError, NewEvent};
use catga_core::store::saga::SagaStore;
use catga_core::testkit;
use catga_redis::RedisTransport;
use catga_redis::store::{RedisStoreError, RedisStores};

use super::common::private_cluster::{self, PrivateCluster};
use super::transport::app::{TickA, Ticks};

/// Appends one event to `stream` at `version`, trying again while the error is retryable
/// (the failover in progress), for up to 20 s.
async fn append(events: &impl EventStore, stream: &str, version: u64) -> Duration {
    let started = Instant::now();
    loop {
        let appended = events
            .append(
                stream,
                version,
                vec![NewEvent::new("Placed", b"{}".to_vec())],
            )
            .await;
        match appended {
            Ok(_) => return started.elapsed(),
            // An attempt whose reply was lost in the switch was applied after all.
            Err(EventStoreError::Conflict { actual, .. }) if actual == version + 1 => {
                return started.elapsed();
            }
            Err(error) => {
                let retryable = match &error {
                    EventStoreError::Backend { source, .. } => source
                        .downcast_ref::<RedisStoreError>()
                        .is_some_and(RedisStoreError::is_retryable),
                    _ => false,
                };
                assert!(
                    retryable,
                    "only retryable errors during a failover: {error}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "still failing 20 s after the failover"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_a_serving_instance_go_on_after_a_failover() {
    if !private_cluster::available("failover") {
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| PrivateCluster::start(3, 1))
        .await
        .expect("the cluster starts");
    // A prefix whose event store and event stream are on one primary: that one fails over.
    let prefix = (0..64)
        .map(|_| super::prefix("failover"))
        .find(|p| {
            cluster.owner_of(&format!("{{{p}:events}}"))
                == cluster.owner_of(&format!("{p}:events:cluster.tick.a"))
        })
        .expect("one in three prefixes will do");
    let stores = RedisStores::connect_cluster(cluster.urls())
        .prefix(prefix.as_str())
        .await
        .expect("the cluster answers");
    let events = stores.events();
    for version in 0..5 {
        append(&events, "order-1", version).await;
    }
    let transport = RedisTransport::connect_cluster(cluster.urls())
        .prefix(prefix.as_str())
        .fetch_wait(Duration::from_millis(500))
        .await
        .expect("the cluster answers");
    let ticks = Arc::new(Ticks::default());
    let app = Catga::builder()
        .transport(transport)
        .service("cluster-failover")
        .state_arc(Arc::clone(&ticks))
        .handlers(|h| h.is_in("transport::app"))
        .build()
        .expect("the application builds");
    let serving = app.serve().await.expect("serves");
    for n in 0..10 {
        app.publish(TickA(n)).await.expect("published");
    }
    testkit::within(Duration::from_secs(10), "the first events", || async {
        ticks.count() == 10
    })
    .await;

    // The replica of the node holding both takes over.
    let key = format!("{{{prefix}:events}}");
    let primary = cluster.owner_of(&key);
    let replica = cluster.replica_of(primary);
    let switched = Instant::now();
    tokio::task::block_in_place(|| cluster.fail_over(&key, primary, replica));
    eprintln!(
        "node {replica} took over from {primary} in {:?}",
        switched.elapsed()
    );

    // The stores go on (the first append may wait out the switch), and kept everything.
    let took = append(&events, "order-1", 5).await;
    eprintln!("first append after the failover took {took:?}");
    let loaded = events.load("order-1", 0).await.expect("load");
    assert_eq!(
        loaded.len(),
        6,
        "nothing appended before the failover is lost"
    );
    assert!(
        stores
            .sagas()
            .load(uuid::Uuid::now_v7())
            .await
            .expect("saga load")
            .is_none()
    );
    // The serving instance reads from the new primary: events published now are handled.
    for n in 10..20 {
        let started = Instant::now();
        loop {
            match app.publish(TickA(n)).await {
                Ok(()) => break,
                Err(error) => {
                    assert!(error.is_retryable(), "{error}");
                    assert!(started.elapsed() < Duration::from_secs(20), "{error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    testkit::within(
        Duration::from_secs(20),
        "the events after the failover",
        || async { ticks.count() >= 20 },
    )
    .await;
    serving.shutdown().await;
    drop(cluster);
}
