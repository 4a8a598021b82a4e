//! The outbox on a cluster: a unit's writes, events and inbox record commit by one script on
//! the node owning `{prefix:outbox}`; the relay publishes every event once, in order per
//! key, to the transport on the same cluster, whose streams are on other nodes; a commit of a
//! process without a relay wakes another process's relay through pub/sub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::within;
use catga_redis::store::RedisStores;
use catga_redis::{RedisOutbox, RedisTransport, RedisWrites};

use super::common::private_cluster::PrivateCluster;

#[command(output = u64, name = "cluster.place")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Place {
    pub id: u64,
    pub events: u32,
}

#[event(name = "cluster.placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    pub order: u64,
    pub seq: u32,
}

/// Per order, the sequence numbers of its events in arrival order.
#[derive(Default)]
pub struct Seen {
    by_order: Mutex<HashMap<u64, Vec<u32>>>,
}

impl Seen {
    pub fn total(&self) -> usize {
        self.by_order
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    pub fn by_order(&self) -> HashMap<u64, Vec<u32>> {
        self.by_order.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

pub mod orders {
    use super::*;

    /// Writes the order and a counter through the unit of work and publishes its events.
    #[handler]
    pub async fn place(cmd: Place, ctx: &Context) -> Result<u64, BoxError> {
        let writes = RedisWrites::current()?;
        writes.hset(&writes.key(&format!("order:{}", cmd.id)), "id", cmd.id)?;
        writes.incr_by(&writes.key("count"), 1)?;
        for seq in 0..cmd.events {
            ctx.publish(Placed { order: cmd.id, seq })?;
        }
        Ok(cmd.id)
    }

    #[handler]
    impl Seen {
        async fn on_placed(&self, event: &Placed) -> Result<(), BoxError> {
            if let Ok(mut seen) = self.by_order.lock() {
                seen.entry(event.order).or_default().push(event.seq);
            }
            Ok(())
        }
    }
}

/// An application with the outbox and the cluster transport, handling `Place` here and
/// `Placed` as service `service` once it serves (one event at a time: in stream order).
async fn app(
    stores: &RedisStores,
    transport: RedisTransport,
    service: &str,
    seen: &Arc<Seen>,
) -> Catga<impl Layer> {
    Catga::builder()
        .transport(transport)
        .service(service)
        .serve_max_in_flight(1)
        .state_arc(Arc::clone(seen))
        .handlers(|h| h.is_in("outbox::orders"))
        .layer(RedisOutbox::new(stores))
        .build()
        .expect("the application builds")
}

/// A transport on the cluster, prefix `prefix`.
async fn transport(cluster: &PrivateCluster, prefix: &str) -> RedisTransport {
    RedisTransport::connect_cluster(cluster.urls())
        .prefix(prefix)
        .fetch_wait(Duration::from_millis(500))
        .await
        .expect("the private cluster answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_apply_on_the_outbox_node_and_the_relay_publishes_each_event_once_in_order() {
    let Some((cluster, stores)) = super::stores("outbox").await else {
        return;
    };
    let seen = Arc::new(Seen::default());
    let app = app(
        &stores,
        transport(cluster, stores.prefix()).await,
        "cluster-outbox",
        &seen,
    )
    .await;
    let serving = app.serve().await.expect("serves");
    let outbox = RedisOutbox::new(&stores);
    let running = outbox
        .relay()
        .start(app.clone())
        .await
        .expect("the relay starts");
    let sends = (0..20).map(|id| app.send(Place { id, events: 3 }));
    for sent in futures::future::join_all(sends).await {
        sent.expect("committed");
    }
    within(Duration::from_secs(10), "every event relayed", || async {
        seen.total() == 60
    })
    .await;
    let by_order = seen.by_order();
    assert_eq!(by_order.len(), 20);
    for (order, seqs) in &by_order {
        assert_eq!(seqs, &vec![0, 1, 2], "order {order}: once each, in order");
    }
    // The writes, the counter and the outbox's own keys are all on the node owning the tag.
    let owner = cluster.owner_of(outbox.stream_key());
    let mut node = cluster.node(owner);
    let count: u64 = redis::cmd("GET")
        .arg(outbox.key("count"))
        .query(&mut node)
        .expect("the counter is on the outbox's node");
    assert_eq!(count, 20);
    within(Duration::from_secs(5), "the outbox emptied", || async {
        redis::cmd("XLEN")
            .arg(outbox.stream_key())
            .query::<u64>(&mut cluster.node(owner))
            .is_ok_and(|n| n == 0)
    })
    .await;
    running.shutdown().await;
    serving.shutdown().await;
}

/// A process without a relay commits; the relay of another process, polling only every
/// 30 s, is woken by the commit's `PUBLISH` (made on the outbox's node, heard on the node its
/// subscriber is connected to) and publishes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_another_process_relay_through_pub_sub() {
    let Some((cluster, committing)) = super::stores("outbox_wake").await else {
        return;
    };
    let relaying = RedisStores::connect_cluster(cluster.urls())
        .prefix(committing.prefix())
        .await
        .expect("the private cluster answers");
    let quiet = Arc::new(Seen::default());
    let prefix = committing.prefix().to_string();
    let without_relay = app(
        &committing,
        transport(cluster, &prefix).await,
        "cluster-wake",
        &quiet,
    )
    .await;
    let seen = Arc::new(Seen::default());
    let with_relay = app(
        &relaying,
        transport(cluster, &prefix).await,
        "cluster-wake",
        &seen,
    )
    .await;
    let serving = with_relay.serve().await.expect("serves");
    let relay = RedisOutbox::new(&relaying)
        .relay()
        .poll_interval(Duration::from_secs(30))
        .expect("a valid interval");
    let running = relay.start(with_relay).await.expect("the relay starts");
    // The relay's first drain runs at start; commit after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    without_relay
        .send(Place { id: 1, events: 2 })
        .await
        .expect("committed");
    within(Duration::from_secs(10), "both events relayed", || async {
        seen.total() == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the commit, not the 30 s poll: {:?}",
        started.elapsed()
    );
    assert_eq!(quiet.total(), 0, "the committing process does not serve");
    running.shutdown().await;
    serving.shutdown().await;
}
