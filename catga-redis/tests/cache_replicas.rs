//! `RedisCache` lookups read from replicas (`read_from`), against a real primary and replica
//! (`redis-server --replicaof`) on free loopback ports: which node served each lookup's `MGET`
//! is read off each server's `INFO commandstats`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use catga_core::behavior::{CacheKey, Caching};
use catga_core::prelude::*;
use catga_core::testkit::eventually;
use catga_core::{Identity, Stack};
use catga_redis::store::ReadFrom;
use catga_redis::{ConnectError, RedisCache};
use common::private_redis::{Persistence, PrivateRedis, available};

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceChanged;

#[query(output = u64, cache_ttl = "60s", invalidated_by(PriceChanged))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
}

impl CacheKey for GetPrice {
    fn cache_key(&self) -> String {
        self.sku.to_string()
    }
}

/// The data behind the query, shared by every instance.
#[derive(Default)]
pub struct Shop {
    runs: AtomicU32,
    price: AtomicU64,
}

pub mod shop {
    use super::*;

    #[handler]
    impl Shop {
        async fn price(&self, q: GetPrice) -> Result<u64, Never> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(self.price.load(Ordering::SeqCst) + q.sku)
        }
    }
}

impl Shop {
    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// One instance: an application whose caching layer keeps replies in `cache`.
struct Instance {
    app: Catga<Stack<Arc<Caching<RedisCache>>, Identity>>,
    caching: Arc<Caching<RedisCache>>,
}

impl Instance {
    fn new(shop: &Arc<Shop>, cache: RedisCache) -> Instance {
        let caching = Arc::new(Caching::with_backend(cache));
        let app = Catga::builder()
            .state_arc(Arc::clone(shop))
            .layer(Arc::clone(&caching))
            .build()
            .expect("the application builds");
        Instance { app, caching }
    }

    async fn price(&self, sku: u64) -> u64 {
        self.app
            .send(GetPrice { sku })
            .await
            .expect("a query never fails because of the cache")
    }

    fn near(&self) -> usize {
        self.caching.cached::<GetPrice>()
    }
}

/// Which node served the one `MGET` of `lookup`: `"primary"` or `"replica"`.
async fn served_by<T>(
    primary: &PrivateRedis,
    replica: &PrivateRedis,
    lookup: impl Future<Output = T>,
) -> (&'static str, T) {
    let (p, r) = (primary.calls("mget").await, replica.calls("mget").await);
    let answer = lookup.await;
    let (p2, r2) = (primary.calls("mget").await, replica.calls("mget").await);
    match (p2 - p, r2 - r) {
        (1, 0) => ("primary", answer),
        (0, 1) => ("replica", answer),
        other => panic!("one node should have served the lookup: {other:?}"),
    }
}

/// Waits until the replica holds what the primary holds for the reply of `sku` under
/// `prefix` and for the query's generation.
async fn replicated(primary: &PrivateRedis, replica: &PrivateRedis, prefix: &str, sku: u64) {
    let generation = format!("{prefix}:cache:{{GetPrice}}");
    let keys = [format!("{generation}:{sku}"), generation];
    let (primary, replica) = (primary.raw().await, replica.raw().await);
    let read = |mut conn: redis::aio::MultiplexedConnection, keys: [String; 2]| async move {
        redis::cmd("MGET")
            .arg(&keys[..])
            .query_async::<Vec<Option<Vec<u8>>>>(&mut conn)
            .await
            .expect("MGET")
    };
    let want = read(primary, keys.clone()).await;
    assert!(want[0].is_some(), "the primary holds the reply");
    eventually("the replica has the reply", || {
        let (replica, keys, want) = (replica.clone(), keys.clone(), want.clone());
        async move { read(replica, keys).await == want }
    })
    .await;
}

/// Long enough that a lookup made right after an invalidation is inside it on a loaded
/// machine; the tests wait it out once each.
const WINDOW: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_read_the_replica_except_right_after_this_process_invalidated() {
    if !available("cache_replica_reads") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let replica = PrivateRedis::start_replica_of(&primary).await;
    let cache = RedisCache::connect(primary.url())
        .prefix("replicas")
        .near_cache(false)
        .read_from(ReadFrom::PreferReplica)
        .replica(replica.url())
        .read_your_writes_for(WINDOW)
        .await
        .expect("connects");
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache);

    let (node, price) = served_by(&primary, &replica, one.price(1)).await;
    assert_eq!((node, price), ("replica", 1), "a cold lookup");
    assert_eq!(shop.runs(), 1, "a miss: the handler ran, its reply stored");
    replicated(&primary, &replica, "replicas", 1).await;
    assert_eq!(
        served_by(&primary, &replica, one.price(1)).await,
        ("replica", 1)
    );
    assert_eq!(shop.runs(), 1, "a hit on the replica");

    for invalidate_key in [false, true] {
        if invalidate_key {
            one.caching.invalidate_key(&GetPrice { sku: 1 });
        } else {
            one.caching.invalidate::<GetPrice>();
        }
        let runs = shop.runs();
        assert_eq!(
            served_by(&primary, &replica, one.price(1)).await,
            ("primary", 1),
            "within the window after this process's invalidation (key: {invalidate_key})"
        );
        assert_eq!(shop.runs(), runs + 1, "the invalidated reply is not served");
        tokio::time::sleep(WINDOW).await;
        replicated(&primary, &replica, "replicas", 1).await;
        assert_eq!(
            served_by(&primary, &replica, one.price(1)).await,
            ("replica", 1),
            "after the window (key: {invalidate_key})"
        );
        assert_eq!(shop.runs(), runs + 1, "the new reply, from the replica");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearing_another_instances_invalidation_sends_lookups_to_the_primary_for_the_window() {
    if !available("cache_replica_heard") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let replica = PrivateRedis::start_replica_of(&primary).await;
    let shop = Arc::new(Shop::default());
    let a = Instance::new(
        &shop,
        RedisCache::connect(primary.url())
            .prefix("heard")
            .await
            .expect("connects"),
    );
    // No replica given: the primary lists it (`ROLE`).
    let b = Instance::new(
        &shop,
        RedisCache::connect(primary.url())
            .prefix("heard")
            .read_from(ReadFrom::PreferReplica)
            .read_your_writes_for(WINDOW)
            .await
            .expect("connects"),
    );
    assert_eq!(
        served_by(&primary, &replica, b.price(1)).await,
        ("replica", 1)
    );
    assert_eq!(b.near(), 1, "B keeps the reply near");

    a.app.publish(PriceChanged).await.expect("published");
    eventually("B hears A's invalidation", || async { b.near() == 0 }).await;
    assert_eq!(
        served_by(&primary, &replica, b.price(2)).await,
        ("primary", 2),
        "within the window after hearing another instance's invalidation"
    );
    tokio::time::sleep(WINDOW).await;
    assert_eq!(
        served_by(&primary, &replica, b.price(3)).await,
        ("replica", 3),
        "after the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_sends_lookups_to_the_primary_where_they_still_hit() {
    if !available("cache_replica_killed") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let mut replica = PrivateRedis::start_replica_of(&primary).await;
    let cache = RedisCache::connect(primary.url())
        .prefix("killed")
        .near_cache(false)
        .read_from(ReadFrom::PreferReplica)
        .replica(replica.url())
        .await
        .expect("connects");
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache.clone());
    one.price(1).await;
    replicated(&primary, &replica, "killed", 1).await;
    assert_eq!(
        served_by(&primary, &replica, one.price(1)).await,
        ("replica", 1)
    );
    assert_eq!(shop.runs(), 1);

    replica.kill();
    for _ in 0..3 {
        let before = primary.calls("mget").await;
        assert_eq!(one.price(1).await, 1);
        assert_eq!(
            primary.calls("mget").await,
            before + 1,
            "the primary served it"
        );
    }
    assert_eq!(shop.runs(), 1, "every lookup still hit");
    assert!(!cache.is_unreachable(), "a replica's failure is no outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_only_lookups_are_misses_when_the_replica_is_gone() {
    if !available("cache_replica_only") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    let mut replica = PrivateRedis::start_replica_of(&primary).await;
    let cache = RedisCache::connect(primary.url())
        .prefix("only")
        .near_cache(false)
        .read_from(ReadFrom::Replica)
        .replica(replica.url())
        .timeout(Duration::from_millis(300))
        .await
        .expect("connects");
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache.clone());
    one.price(1).await;
    replicated(&primary, &replica, "only", 1).await;
    assert_eq!(
        served_by(&primary, &replica, one.price(1)).await,
        ("replica", 1)
    );
    assert_eq!(shop.runs(), 1);

    replica.kill();
    let before = primary.calls("mget").await;
    for round in 1..=3 {
        assert_eq!(one.price(1).await, 1, "answered, by the handler");
        assert_eq!(shop.runs(), 1 + round, "a miss each time");
    }
    assert_eq!(
        primary.calls("mget").await,
        before,
        "never read from the primary"
    );
    assert!(!cache.is_unreachable(), "a replica's failure is no outage");
}

#[tokio::test]
async fn replica_options_that_cannot_be_used_are_refused_before_connecting() {
    // Nothing listens on port 1: only the option checks could pass or fail before connecting.
    let cases = [
        (
            RedisCache::connect_cluster(["redis://127.0.0.1:1"]).read_from(ReadFrom::PreferReplica),
            "read_from",
        ),
        (
            RedisCache::connect_cluster(["redis://127.0.0.1:1"]).read_from(ReadFrom::Replica),
            "read_from",
        ),
        (
            RedisCache::connect_cluster(["redis://127.0.0.1:1"]).replica("redis://127.0.0.1:2"),
            "replica",
        ),
        (
            // Reads from the primary: the replica would never be read.
            RedisCache::connect("redis://127.0.0.1:1").replica("redis://:secret@127.0.0.1:2"),
            "replica",
        ),
    ];
    for (connect, option) in cases {
        let refused = connect.await.expect_err("refused");
        match &refused {
            ConnectError::InvalidOption { option: named, .. } => assert_eq!(*named, option),
            other => panic!("{option}: {other:?}"),
        }
        assert!(!refused.to_string().contains("secret"), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_connecting_is_found_and_read_by_lookups() {
    if !available("cache_replica_found_later") {
        return;
    }
    let primary = PrivateRedis::start(Persistence::None).await;
    // No replica given, and the primary has none yet.
    let cache = RedisCache::connect(primary.url())
        .prefix("later")
        .near_cache(false)
        .read_from(ReadFrom::PreferReplica)
        .read_your_writes_for(Duration::ZERO)
        .await
        .expect("connects: `PreferReplica` reads the primary until a replica is found");
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache);
    let before = primary.calls("mget").await;
    assert_eq!(one.price(1).await, 1);
    assert_eq!(
        primary.calls("mget").await,
        before + 1,
        "the primary served the lookup"
    );

    let replica = PrivateRedis::start_replica_of(&primary).await;
    replicated(&primary, &replica, "later", 1).await;
    eventually("lookups read the replica the primary now lists", || async {
        served_by(&primary, &replica, one.price(1)).await == ("replica", 1)
    })
    .await;
    assert_eq!(shop.runs(), 1, "every lookup after the first hit");
}
