//! A cluster whose nodes ask for a password (a cluster of its own): the builders' credentials
//! reach every node, the ones the redis crate's cluster connection finds by itself and the
//! connections of their own that blocking reads and reply waits open to one node; a wrong
//! password is a typed `Unauthorized`.

use std::sync::Arc;
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::store::event::{EventStore, NewEvent};
use catga_core::testkit;
use catga_redis::store::RedisStores;
use catga_redis::{ConnectError, RedisTransport};

use super::common::private_cluster::{self, PrivateCluster};
use super::transport::app::{Double, TickB, Ticks};

const PASSWORD: &str = "s3cret-cluster";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_every_node_and_a_wrong_password_is_unauthorized() {
    if !private_cluster::available("auth") {
        return;
    }
    let cluster =
        tokio::task::spawn_blocking(|| PrivateCluster::start_with_password(3, 0, Some(PASSWORD)))
            .await
            .expect("the cluster starts");
    let prefix = super::prefix("auth");

    let refused = RedisStores::connect_cluster(cluster.urls())
        .password("wrong")
        .await
        .expect_err("refused");
    assert!(
        matches!(refused, ConnectError::Unauthorized { .. }),
        "{refused:?}"
    );
    assert!(!format!("{refused} {refused:?}").contains("wrong"));

    let stores = RedisStores::connect_cluster(cluster.urls())
        .prefix(prefix.as_str())
        .password(PASSWORD)
        .await
        .expect("the password is taken");
    stores
        .events()
        .append("order-1", 0, vec![NewEvent::new("Placed", b"{}".to_vec())])
        .await
        .expect("append");

    let connect = || {
        RedisTransport::connect_cluster(cluster.urls())
            .prefix(prefix.as_str())
            .password(PASSWORD)
            .fetch_wait(Duration::from_millis(500))
    };
    let ticks = Arc::new(Ticks::default());
    let serving = Catga::builder()
        .transport(connect().await.expect("connects"))
        .service("cluster-auth")
        .state_arc(Arc::clone(&ticks))
        .handlers(|h| h.is_in("transport::app"))
        .build()
        .expect("the application builds");
    let running = serving.serve().await.expect("serves");
    let caller = Catga::builder()
        .transport(connect().await.expect("connects"))
        .service("cluster-auth-caller")
        .handlers(|_| false)
        .build()
        .expect("the application builds");
    for n in 0..5 {
        caller.publish(TickB(n)).await.expect("published");
        // The reply wait opens a connection of its own to the reply list's node.
        assert_eq!(caller.send(Double(n)).await.expect("answered"), n * 2);
    }
    testkit::within(Duration::from_secs(10), "every event handled", || async {
        ticks.count() == 5
    })
    .await;
    running.shutdown().await;
}
