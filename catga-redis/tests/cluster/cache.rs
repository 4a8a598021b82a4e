//! The cache on a cluster: two instances (two applications, each with a `RedisCache` of its
//! own on the shared cluster and one prefix) share the replies of three queries whose keys are
//! on three different nodes, and hear each other's invalidations through the subscription on
//! the first node.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_core::transport::MemoryTransport;
use catga_core::{Identity, Stack};
use catga_redis::RedisCache;

use super::common::private_cluster::PrivateCluster;

pub mod shop {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use catga_core::BoxError;
    use catga_core::behavior::CacheKey;
    use catga_core::prelude::*;

    #[event(name = "cluster.cache.changed")]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Changed;

    // The wire names are the hash tags of the queries' keys: these three are in slots 3380,
    // 5905 and 15748, one in each third of the slots, so on three nodes.
    #[query(
        output = u64,
        name = "cluster.cache.price",
        cache_ttl = "60s",
        invalidated_by(Changed)
    )]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Price(pub u64);

    #[query(
        output = u64,
        name = "cluster.cache.stock",
        cache_ttl = "60s",
        invalidated_by(Changed)
    )]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Stock(pub u64);

    #[query(
        output = u64,
        name = "cluster.cache.volume",
        cache_ttl = "60s",
        invalidated_by(Changed)
    )]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Volume(pub u64);

    /// The wire names of [`Price`], [`Stock`] and [`Volume`], in that order.
    pub const NAMES: [&str; 3] = [
        "cluster.cache.price",
        "cluster.cache.stock",
        "cluster.cache.volume",
    ];

    macro_rules! keyed {
        ($($query:ident),*) => {$(
            impl CacheKey for $query {
                fn cache_key(&self) -> String {
                    self.0.to_string()
                }
            }
        )*};
    }
    keyed!(Price, Stock, Volume);

    /// The data behind the queries, shared by both instances; a reply is `version * 1000 +
    /// sku`.
    #[derive(Default)]
    pub struct Shop {
        /// Handler runs of each query, both instances together.
        pub runs: [AtomicU32; 3],
        pub version: AtomicU64,
    }

    impl Shop {
        fn answer(&self, query: usize, sku: u64) -> u64 {
            self.runs[query].fetch_add(1, Ordering::SeqCst);
            self.version.load(Ordering::SeqCst) * 1000 + sku
        }

        pub fn runs(&self, query: usize) -> u32 {
            self.runs[query].load(Ordering::SeqCst)
        }
    }

    #[handler]
    impl Shop {
        async fn price(&self, q: Price) -> Result<u64, BoxError> {
            Ok(self.answer(0, q.0))
        }
        async fn stock(&self, q: Stock) -> Result<u64, BoxError> {
            Ok(self.answer(1, q.0))
        }
        async fn volume(&self, q: Volume) -> Result<u64, BoxError> {
            Ok(self.answer(2, q.0))
        }
    }
}

use shop::{Changed, NAMES, Price, Shop, Stock, Volume};

/// One instance: an application whose caching layer keeps replies in its own cache.
struct Instance {
    app: Catga<Stack<Arc<Caching<RedisCache>>, Identity>>,
    caching: Arc<Caching<RedisCache>>,
}

impl Instance {
    async fn new(
        cluster: &PrivateCluster,
        prefix: &str,
        near_cache: bool,
        shop: &Arc<Shop>,
    ) -> Instance {
        let cache = RedisCache::connect_cluster(cluster.urls())
            .prefix(prefix)
            .near_cache(near_cache)
            .await
            .expect("the private cluster answers");
        let caching = Arc::new(Caching::with_backend(cache));
        // A transport of its own lets the binary's other requests go unhandled here; this
        // instance serves nothing, so it only ever runs its own handlers.
        let app = Catga::builder()
            .transport(MemoryTransport::new())
            .state_arc(Arc::clone(shop))
            .handlers(|h| h.is_in("cache::shop"))
            .layer(Arc::clone(&caching))
            .build()
            .expect("the application builds");
        Instance { app, caching }
    }

    /// Sends query `query` (an index into [`NAMES`]) for `sku`.
    async fn ask(&self, query: usize, sku: u64) -> u64 {
        let reply = match query {
            0 => self.app.send(Price(sku)).await,
            1 => self.app.send(Stock(sku)).await,
            _ => self.app.send(Volume(sku)).await,
        };
        reply.expect("a query never fails because of the cache")
    }

    /// The replies of query `query` in this instance's near-cache.
    fn near(&self, query: usize) -> usize {
        match query {
            0 => self.caching.cached::<Price>(),
            1 => self.caching.cached::<Stock>(),
            _ => self.caching.cached::<Volume>(),
        }
    }
}

/// `{prefix}:cache:{Q}`: query `Q`'s generation key.
fn generation_key(prefix: &str, query: &str) -> String {
    format!("{prefix}:cache:{{{query}}}")
}

fn keyslot(cluster: &PrivateCluster, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut cluster.node(cluster.ports()[0]))
        .expect("CLUSTER KEYSLOT")
}

/// The nodes holding a key that matches `pattern`.
fn nodes_holding(cluster: &PrivateCluster, pattern: &str) -> Vec<u16> {
    cluster
        .ports()
        .into_iter()
        .filter(|&port| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut cluster.node(port))
                .unwrap_or_default();
            !keys.is_empty()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_on_every_node_serve_both_instances_and_invalidations_reach_both() {
    let Some(cluster) = PrivateCluster::shared("cache-shared") else {
        return;
    };
    let prefix = super::prefix("cache-shared");
    let owners: HashSet<u16> = NAMES
        .iter()
        .map(|q| cluster.owner_of(&generation_key(&prefix, q)))
        .collect();
    assert_eq!(owners.len(), 3, "the three queries are on three nodes");
    let shop = Arc::new(Shop::default());
    let a = Instance::new(cluster, &prefix, true, &shop).await;
    let b = Instance::new(cluster, &prefix, true, &shop).await;

    for (q, name) in NAMES.iter().enumerate() {
        assert_eq!(a.ask(q, 1).await, 1);
        assert_eq!(b.ask(q, 1).await, 1, "{}: the reply A stored", name);
        assert_eq!(b.ask(q, 1).await, 1, "{}: from B's near-cache", name);
        assert_eq!(shop.runs(q), 1, "{}: the handler ran once in all", name);
        assert_eq!((a.near(q), b.near(q)), (1, 1));
    }

    // An `invalidated_by` event on A drops every query's replies, B's near ones included.
    shop.version.store(1, Ordering::SeqCst);
    a.app.publish(Changed).await.expect("published");
    eventually("B hears the invalidations of the three queries", || async {
        (0..3).all(|q| b.near(q) == 0)
    })
    .await;
    for (q, name) in NAMES.iter().enumerate() {
        assert_eq!(b.ask(q, 1).await, 1001, "{}: B runs the handler", name);
        assert_eq!(a.ask(q, 1).await, 1001, "{}: A is served B's reply", name);
        assert_eq!(shop.runs(q), 2, "{}", name);
    }

    // `invalidate::<Q>()` on B drops only that query's replies.
    shop.version.store(2, Ordering::SeqCst);
    b.caching.invalidate::<Stock>();
    eventually("A hears B's invalidation of Stock", || async {
        a.near(1) == 0
    })
    .await;
    assert_eq!((a.near(0), a.near(2)), (1, 1), "the other queries stay");
    assert_eq!(a.ask(1, 1).await, 2001);
    assert_eq!(b.ask(1, 1).await, 2001);
    assert_eq!(shop.runs(1), 3);
    assert_eq!(shop.runs(0), 2, "Price is still cached");

    // One key, on the third node: deleted there and dropped by the other instance.
    b.ask(2, 7).await;
    assert_eq!(a.ask(2, 7).await, 2007);
    assert_eq!(shop.runs(2), 3);
    a.caching.invalidate_key(&Volume(1));
    eventually("B drops the key A invalidated", || async { b.near(2) == 1 }).await;
    assert_eq!(b.ask(2, 1).await, 2001, "the key was deleted in Redis too");
    assert_eq!(b.ask(2, 7).await, 2007, "the other key is still cached");
    assert_eq!(shop.runs(2), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_near_cache_every_lookup_reads_the_node_of_its_query() {
    let Some(cluster) = PrivateCluster::shared("cache-no-near") else {
        return;
    };
    let prefix = super::prefix("cache-no-near");
    let shop = Arc::new(Shop::default());
    let a = Instance::new(cluster, &prefix, false, &shop).await;
    let b = Instance::new(cluster, &prefix, false, &shop).await;
    for (q, name) in NAMES.iter().enumerate() {
        assert_eq!(a.ask(q, 1).await, 1);
        assert_eq!(b.ask(q, 1).await, 1);
        assert_eq!(shop.runs(q), 1, "{}: a hit in Redis for B", name);
        assert_eq!(b.near(q), 0, "nothing kept near");
    }
    shop.version.store(1, Ordering::SeqCst);
    a.app.publish(Changed).await.expect("published");
    for (q, name) in NAMES.iter().enumerate() {
        // A's lookup waits for its own invalidation, then stores the new reply.
        assert_eq!(a.ask(q, 1).await, 1001);
        assert_eq!(b.ask(q, 1).await, 1001, "{}: the new reply", name);
        assert_eq!(shop.runs(q), 2, "{}", name);
    }
    shop.version.store(2, Ordering::SeqCst);
    b.caching.invalidate::<Price>();
    assert_eq!(b.ask(0, 1).await, 2001);
    assert_eq!(a.ask(0, 1).await, 2001);
    assert_eq!(shop.runs(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_querys_generation_and_replies_live_on_one_node() {
    let Some(cluster) = PrivateCluster::shared("cache-slots") else {
        return;
    };
    let prefix = super::prefix("cache-slots");
    let shop = Arc::new(Shop::default());
    let one = Instance::new(cluster, &prefix, true, &shop).await;
    for q in 0..NAMES.len() {
        for sku in 1..=5 {
            one.ask(q, sku).await;
        }
    }
    one.caching.invalidate::<Price>();
    one.ask(0, 1).await;
    for q in NAMES {
        let generation = generation_key(&prefix, q);
        let slot = keyslot(cluster, &generation);
        for sku in 1..=5 {
            let entry = format!("{generation}:{sku}");
            assert_eq!(keyslot(cluster, &entry), slot, "{entry}");
        }
        let owner = cluster.owner_of(&generation);
        assert_eq!(
            nodes_holding(cluster, &format!("{generation}*")),
            vec![owner],
            "{q}: the generation and every reply are on the node owning the slot"
        );
    }
}
