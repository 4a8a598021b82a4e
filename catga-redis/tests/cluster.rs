//! catga-redis on a Redis Cluster: a private cluster of three primaries
//! (`common/private_cluster.rs`), started once and shared by every test of this binary (a
//! cluster per test would cost about a second each), each test on a key prefix of its own.
//! The store and transport conformance suites run on it as on a single server; the other
//! modules check what a cluster changes: where keys live, batches over several slots, pub/sub
//! wake-ups through one node, streams on several nodes, the outbox and its relay, the query
//! cache shared by two instances.

#[path = "cluster/auth.rs"]
mod auth;
#[path = "cluster/cache.rs"]
mod cache;
mod common;
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/outbox.rs"]
mod outbox;
#[path = "cluster/stores.rs"]
mod stores;
#[path = "cluster/transport.rs"]
mod transport;

use catga_redis::store::RedisStores;
use common::private_cluster::PrivateCluster;
use uuid::Uuid;

/// A prefix of the test's own.
fn prefix(test: &str) -> String {
    format!("t:{test}:{}", Uuid::now_v7().simple())
}

/// The shared cluster and stores on it under a fresh prefix; `None` when the cluster cannot
/// be started here (the test returns, having said why, or fails under
/// `CATGA_REQUIRE_SERVICES=1`).
async fn stores(test: &str) -> Option<(&'static PrivateCluster, RedisStores)> {
    let cluster = PrivateCluster::shared(test)?;
    let stores = RedisStores::connect_cluster(cluster.urls())
        .prefix(prefix(test))
        .await
        .expect("the private cluster answers");
    Some((cluster, stores))
}

async fn open<S>(scenario: &'static str, make: fn(&RedisStores) -> S) -> Option<S> {
    let (_, stores) = stores(scenario).await?;
    Some(make(&stores))
}

catga_core::testkit::stores::idempotency_store_conformance!(|scenario| open(
    scenario,
    RedisStores::idempotency
));

catga_core::testkit::stores::dead_letter_store_conformance!(|scenario| open(
    scenario,
    RedisStores::dead_letters
));

catga_core::testkit::stores::event_store_conformance!(|scenario| open(
    scenario,
    RedisStores::events
));

catga_core::testkit::stores::saga_store_conformance!(|scenario| open(scenario, RedisStores::sagas));

catga_core::testkit::transport_conformance!(transport::ClusterRedis);
