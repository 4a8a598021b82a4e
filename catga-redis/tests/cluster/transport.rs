//! The transport on a cluster: the conformance suite's kit (each scenario on a prefix of its
//! own), and what a cluster changes: streams spread over the nodes, one instance reading
//! streams of every node, replies in their request stream's slot, the outbox relaying to the
//! transport.

use std::sync::Arc;
use std::time::Duration;

use catga_core::testkit::{self, Capabilities, Settings, TransportUnderTest};
use catga_redis::RedisTransport;

use super::common::private_cluster::PrivateCluster;
use super::common::transport::{Options, cluster_builder};

/// The Redis transport on the shared cluster, for the conformance suite.
pub struct ClusterRedis;

impl TransportUnderTest for ClusterRedis {
    type Corner = Corner;

    async fn open(&self, test: &str, settings: &Settings) -> Option<Corner> {
        let cluster = PrivateCluster::shared(test)?;
        let options = Options {
            prefix: Some(super::prefix(test)),
            max_deliveries: Some(settings.max_deliveries),
            backoff: Some(vec![settings.redelivery_delay]),
            ack_wait: settings.takeover,
            ..Options::for_tests()
        };
        Some(Corner { cluster, options })
    }
}

/// One test's prefix on the shared cluster.
pub struct Corner {
    pub cluster: &'static PrivateCluster,
    pub options: Options,
}

impl Corner {
    pub async fn transport(&self) -> RedisTransport {
        cluster_builder(self.cluster.urls(), &self.options)
            .await
            .expect("the private cluster answers")
    }
}

impl testkit::Corner for Corner {
    type Transport = RedisTransport;

    async fn connect(&self) -> RedisTransport {
        self.transport().await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            keeps_events_for_stopped_services: true,
            max_payload: 1 << 20,
            every_instance_shares_a_burst: true,
            answers_expired_requests: false,
        }
    }

    /// `XINFO GROUPS` on the node owning the event's stream: entries read and not
    /// acknowledged, and entries not read yet.
    async fn unsettled(&self, service: &str, event: &str) -> Option<u64> {
        let stream = format!("{}:events:{event}", self.options.prefix.as_deref()?);
        let owner = self.cluster.owner_of(&stream);
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{owner}"))
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .ok()?;
        let group = reply.groups.into_iter().find(|g| g.name == service)?;
        u64::try_from(group.pending + group.lag.unwrap_or(0)).ok()
    }
}

/// A corner for a test of this module.
async fn corner(test: &str) -> Option<Corner> {
    ClusterRedis.open(test, &Settings::default()).await
}

pub mod app {
    use std::sync::Mutex;

    use catga_core::error::BoxError;
    use catga_core::prelude::*;

    /// Events of several names, so their streams land on several nodes.
    #[event(name = "cluster.tick.a")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TickA(pub u32);
    #[event(name = "cluster.tick.b")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TickB(pub u32);
    #[event(name = "cluster.tick.c")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TickC(pub u32);
    #[event(name = "cluster.tick.d")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct TickD(pub u32);

    #[query(output = u32, name = "cluster.double")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Double(pub u32);

    #[derive(Default)]
    pub struct Ticks(pub Mutex<Vec<(char, u32)>>);

    impl Ticks {
        fn add(&self, name: char, n: u32) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((name, n));
            }
        }
        pub fn count(&self) -> usize {
            self.0.lock().map(|s| s.len()).unwrap_or(0)
        }
    }

    #[handler]
    impl Ticks {
        async fn a(&self, e: &TickA) -> Result<(), BoxError> {
            self.add('a', e.0);
            Ok(())
        }
        async fn b(&self, e: &TickB) -> Result<(), BoxError> {
            self.add('b', e.0);
            Ok(())
        }
        async fn c(&self, e: &TickC) -> Result<(), BoxError> {
            self.add('c', e.0);
            Ok(())
        }
        async fn d(&self, e: &TickD) -> Result<(), BoxError> {
            self.add('d', e.0);
            Ok(())
        }
    }

    #[handler]
    pub async fn double(q: Double) -> Result<u32, BoxError> {
        Ok(q.0 * 2)
    }
}

use app::{Double, TickA, TickB, TickC, TickD, Ticks};
use catga_core::prelude::*;

/// A service handling events whose streams are on different nodes gets every one (one
/// reader per slot), requests are answered (the reply list in the request stream's slot, a
/// reply wait on the node owning it), and shutdown interrupts every node's blocked read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_serves_streams_on_every_node_and_answers_requests() {
    let Some(corner) = corner("spread").await else {
        return;
    };
    let prefix = corner.options.prefix.clone().unwrap_or_default();
    let names = ["a", "b", "c", "d"].map(|n| format!("{prefix}:events:cluster.tick.{n}"));
    let mut owners: Vec<u16> = names.iter().map(|s| corner.cluster.owner_of(s)).collect();
    owners.sort_unstable();
    owners.dedup();
    assert!(owners.len() >= 2, "the four streams spread: {owners:?}");

    let ticks = Arc::new(Ticks::default());
    let serving = Catga::builder()
        .transport(corner.transport().await)
        .service("cluster-ticks")
        .state_arc(Arc::clone(&ticks))
        .handlers(|h| h.is_in("transport::app"))
        .build()
        .expect("the application builds");
    let running = serving.serve().await.expect("serves");
    let caller = Catga::builder()
        .transport(corner.transport().await)
        .service("cluster-caller")
        .handlers(|_| false)
        .build()
        .expect("the application builds");
    for n in 0..25 {
        caller.publish(TickA(n)).await.expect("published");
        caller.publish(TickB(n)).await.expect("published");
        caller.publish(TickC(n)).await.expect("published");
        caller.publish(TickD(n)).await.expect("published");
    }
    for n in 0..20 {
        let doubled = caller.send(Double(n)).await.expect("answered");
        assert_eq!(doubled, n * 2);
    }
    testkit::within(Duration::from_secs(20), "every event handled", || async {
        ticks.count() == 100
    })
    .await;
    let started = std::time::Instant::now();
    running.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "shutdown interrupts the blocked reads on every node (fetch_wait is 500 ms): {:?}",
        started.elapsed()
    );
    // The replies were pushed in the request stream's slot and consumed: none is left.
    let request = format!("{prefix}:requests:cluster.double");
    let owner = corner.cluster.owner_of(&request);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:replies:*"))
        .query(&mut corner.cluster.node(owner))
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A request whose reply list is not in its stream's slot (named by another program, or by
/// a caller of an older version) is still answered on a cluster: the reply first, then the
/// acknowledgement, each in its own slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_list_in_another_slot_is_answered_then_the_request_acknowledged() {
    let Some(corner) = corner("apart").await else {
        return;
    };
    let prefix = corner.options.prefix.clone().unwrap_or_default();
    let serving = Catga::builder()
        .transport(corner.transport().await)
        .service("cluster-doubler")
        .state_arc(Arc::new(Ticks::default()))
        .handlers(|h| h.is_in("transport::app"))
        .build()
        .expect("the application builds");
    let running = serving.serve().await.expect("serves");
    let stream = format!("{prefix}:requests:cluster.double");
    // A list on another node than the stream.
    let reply_key = (0..64)
        .map(|i| format!("{prefix}:replies:elsewhere-{i}"))
        .find(|key| corner.cluster.owner_of(key) != corner.cluster.owner_of(&stream))
        .expect("two in three keys will do");
    let id = uuid::Uuid::now_v7().to_string();
    let mut node = corner.cluster.node(corner.cluster.owner_of(&stream));
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(catga_core::envelope::header::ID)
        .arg(&id)
        .arg(catga_core::envelope::header::NAME)
        .arg("cluster.double")
        .arg(catga_core::envelope::header::KIND)
        .arg("query")
        .arg("catga-reply-to")
        .arg(&reply_key)
        .arg("catga-payload")
        .arg("21")
        .query(&mut node)
        .expect("XADD");
    let mut list = corner.cluster.node(corner.cluster.owner_of(&reply_key));
    testkit::within(Duration::from_secs(10), "the reply", || async {
        redis::cmd("LLEN")
            .arg(&reply_key)
            .query::<u64>(&mut corner.cluster.node(corner.cluster.owner_of(&reply_key)))
            .is_ok_and(|n| n == 1)
    })
    .await;
    let reply: Vec<u8> = redis::cmd("LPOP")
        .arg(&reply_key)
        .query(&mut list)
        .expect("LPOP");
    assert!(String::from_utf8_lossy(&reply).contains("42"), "{reply:?}");
    testkit::within(
        Duration::from_secs(10),
        "acknowledged and deleted",
        || async {
            redis::cmd("XLEN")
                .arg(&stream)
                .query::<u64>(&mut corner.cluster.node(corner.cluster.owner_of(&stream)))
                .is_ok_and(|n| n == 0)
        },
    )
    .await;
    running.shutdown().await;
}
