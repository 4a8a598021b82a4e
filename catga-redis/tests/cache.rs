//! `RedisCache`, the Redis backend of catga's `Caching` behaviour: one cache shared by the
//! instances of a service (here, two applications in one process, each with a cache of its
//! own on one prefix), with a near-cache in each.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catga_core::behavior::{CacheKey, Caching};
use catga_core::prelude::*;
use catga_core::testkit::logs::Logs;
use catga_core::testkit::{PATIENCE, eventually, within};
use catga_core::{AnyMessage, Identity, Stack};
use catga_redis::{ConnectError, RedisCache};
use common::Server;
use common::private_redis::{Persistence, PrivateRedis};
use common::round_trips::RoundTrips;
use redis::AsyncCommands;
use tokio::sync::{Notify, Semaphore};

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

/// A query of this sku waits in the handler until the test lets it go.
const HELD: u64 = 99;

/// The data behind the query, shared by every instance: what a database would be.
pub struct Shop {
    /// Handler runs, every instance together.
    runs: AtomicU32,
    price: AtomicU64,
    entered: Notify,
    release: Semaphore,
}

pub mod shop {
    use super::*;

    #[handler]
    impl Shop {
        async fn price(&self, q: GetPrice) -> Result<u64, Never> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if q.sku == HELD {
                self.entered.notify_one();
                if let Ok(permit) = self.release.acquire().await {
                    permit.forget();
                }
            }
            Ok(self.price.load(Ordering::SeqCst) + q.sku)
        }
    }
}

impl Default for Shop {
    fn default() -> Self {
        Shop {
            runs: AtomicU32::new(0),
            price: AtomicU64::new(0),
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

impl Shop {
    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

/// Keeps a handle on the caching layer inside an application.
struct Layer(Arc<Caching<RedisCache>>);

impl Behavior for Layer {
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send {
        self.0.handle(msg, ctx, next)
    }

    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context) {
        self.0.observe_publish(event, ctx);
    }
}

/// One instance: an application whose caching layer keeps replies in `cache`.
struct Instance {
    app: Catga<Stack<Layer, Identity>>,
    caching: Arc<Caching<RedisCache>>,
}

impl Instance {
    fn new(shop: &Arc<Shop>, cache: RedisCache) -> Instance {
        let caching = Arc::new(Caching::with_backend(cache));
        let app = Catga::builder()
            .state_arc(shop.clone())
            .layer(Layer(caching.clone()))
            .build()
            .unwrap();
        Instance { app, caching }
    }

    async fn price(&self, sku: u64) -> u64 {
        self.app.send(GetPrice { sku }).await.unwrap()
    }

    fn near(&self) -> usize {
        self.caching.cached::<GetPrice>()
    }
}

async fn cache(server: &Server) -> RedisCache {
    RedisCache::connect(server.url.clone())
        .prefix(server.prefix.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reply_cached_by_one_instance_serves_the_other_and_an_event_clears_both() {
    logs();
    let Some(server) = Server::get("cache-two-instances").await else {
        return;
    };
    let shop = Arc::new(Shop::default());
    shop.price.store(100, Ordering::SeqCst);
    let a = Instance::new(&shop, cache(&server).await);
    let b = Instance::new(&shop, cache(&server).await);

    assert_eq!(a.price(1).await, 101);
    assert_eq!(shop.runs(), 1);
    assert_eq!(b.price(1).await, 101, "from Redis: the reply A stored");
    assert_eq!(b.price(1).await, 101, "from B's near-cache");
    assert_eq!(shop.runs(), 1, "B never ran the handler");
    assert_eq!((a.near(), b.near()), (1, 1));

    // The price changes; A handles the event that says so.
    shop.price.store(200, Ordering::SeqCst);
    a.app.publish(PriceChanged).await.unwrap();
    assert_eq!(a.near(), 0, "A's own near entry goes at once");
    assert_eq!(a.price(1).await, 201, "A reads its own invalidation");
    assert_eq!(shop.runs(), 2);
    eventually("B hears the invalidation", || async { b.near() == 0 }).await;
    assert_eq!(b.price(1).await, 201, "B is served A's new reply");
    assert_eq!(shop.runs(), 2, "the handler ran once for both");

    // The other way round: B's event, A's next query runs the handler, B is served.
    shop.price.store(300, Ordering::SeqCst);
    b.app.publish(PriceChanged).await.unwrap();
    eventually("A hears the invalidation", || async { a.near() == 0 }).await;
    assert_eq!(a.price(1).await, 301);
    assert_eq!(b.price(1).await, 301);
    assert_eq!(shop.runs(), 3);
}

#[tokio::test]
async fn one_key_invalidated_by_one_instance_is_dropped_by_both_and_the_others_stay() {
    logs();
    let Some(server) = Server::get("cache-one-key").await else {
        return;
    };
    let shop = Arc::new(Shop::default());
    let a = Instance::new(&shop, cache(&server).await);
    let b = Instance::new(&shop, cache(&server).await);
    for sku in [1, 2] {
        a.price(sku).await;
        b.price(sku).await;
    }
    assert_eq!((shop.runs(), b.near()), (2, 2));
    shop.price.store(10, Ordering::SeqCst);
    a.caching.invalidate_key(&GetPrice { sku: 1 });
    eventually("B drops the key", || async { b.near() == 1 }).await;
    assert_eq!(b.price(1).await, 11, "the key was deleted in Redis too");
    assert_eq!(b.price(2).await, 2, "the other key is still cached");
    assert_eq!(shop.runs(), 3);
}

#[tokio::test]
async fn a_reply_loaded_across_an_invalidation_is_not_stored() {
    logs();
    let Some(server) = Server::get("cache-fenced").await else {
        return;
    };
    let shop = Arc::new(Shop::default());
    let a = Instance::new(&shop, cache(&server).await);
    let b = Instance::new(&shop, cache(&server).await);
    let loading = tokio::spawn({
        let app = a.app.clone();
        async move { app.send(GetPrice { sku: HELD }).await }
    });
    shop.entered.notified().await;
    // B invalidates while A's handler is still reading the old data; B's next lookup waits
    // for the invalidation to reach Redis.
    b.app.publish(PriceChanged).await.unwrap();
    b.price(1).await;
    shop.release.add_permits(1);
    assert_eq!(loading.await.unwrap().unwrap(), HELD);
    assert_eq!(a.near(), 0, "not kept near either");
    let runs = shop.runs();
    shop.release.add_permits(1);
    assert_eq!(b.price(HELD).await, HELD);
    assert_eq!(shop.runs(), runs + 1, "the stale reply was not stored");
}

#[tokio::test]
async fn a_repeated_hit_costs_no_round_trip() {
    logs();
    let Some(server) = Server::get("cache-round-trips").await else {
        return;
    };
    for near_cache in [true, false] {
        let proxy = RoundTrips::start(&server.url).await;
        // Commands go through the proxy; the subscription (and its heartbeat) directly.
        let manager = redis::Client::open(proxy.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let cache = RedisCache::with_connection(client, manager)
            .prefix(format!("{}:{near_cache}", server.prefix))
            .near_cache(near_cache)
            .await
            .unwrap();
        let shop = Arc::new(Shop::default());
        let one = Instance::new(&shop, cache);

        proxy.reset();
        one.price(5).await;
        assert_eq!(
            proxy.names(),
            ["MGET", "EVALSHA"],
            "a miss: a read, a store"
        );
        assert_eq!(proxy.round_trips(), 2);

        proxy.reset();
        one.price(5).await;
        if near_cache {
            assert_eq!(proxy.names(), Vec::<String>::new(), "a near hit");
            assert_eq!(proxy.round_trips(), 0);
        } else {
            assert_eq!(proxy.names(), ["MGET"], "a hit in Redis");
            assert_eq!(proxy.round_trips(), 1);
        }
        assert_eq!(shop.runs(), 1);
    }
}

/// How long an invalidation published by one instance takes to empty another instance's
/// near-cache entry. Only that it happens is asserted; the figures go to
/// `docs/performance.md` (run with `--nocapture` to see them).
// One thread: the waiting loop yields to the instances' tasks instead of taking a core from
// them (and from the server) while it spins.
#[tokio::test]
async fn an_invalidation_reaches_another_instances_near_cache() {
    logs();
    let Some(server) = Server::get("cache-delay").await else {
        return;
    };
    const TRIALS: usize = 200;
    let shop = Arc::new(Shop::default());
    let a = Instance::new(&shop, cache(&server).await);
    let b = Instance::new(&shop, cache(&server).await);
    let mut delays = Vec::with_capacity(TRIALS);
    for _ in 0..TRIALS {
        b.price(1).await;
        assert_eq!(b.near(), 1, "B holds the reply near");
        let published = Instant::now();
        a.app.publish(PriceChanged).await.unwrap();
        let gone = tokio::time::timeout(PATIENCE, async {
            while b.near() != 0 {
                tokio::task::yield_now().await;
            }
            published.elapsed()
        })
        .await
        .expect("B's near entry is dropped");
        delays.push(gone);
    }
    delays.sort_unstable();
    let at = |p: usize| delays[(TRIALS * p / 100).min(TRIALS - 1)];
    eprintln!(
        "invalidation -> other instance's near entry gone, {TRIALS} trials: p50 {:?}, p99 {:?}, max {:?}",
        at(50),
        at(99),
        delays[TRIALS - 1]
    );
}

/// The log lines of the test binary: one global subscriber, installed by every test before
/// anything else. A subscriber of one test's thread would miss lines whose callsite another
/// test's thread registered first, with no subscriber, as never enabled.
fn logs() -> &'static Logs {
    catga_core::testkit::logs::capture()
}

/// The prefix of the outage test's cache: its log lines carry it.
const LOGGED: &str = "logged-outage";

/// The lines of `logs` about the outage test's cache.
fn ours(logs: &Logs) -> String {
    let field = format!("prefix={LOGGED}");
    logs.text()
        .lines()
        .filter(|line| line.contains(&field))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The outage warnings in `logs`: at least one, and never two without the outage having
/// ended in between (the one warning this test's outage gives, unless another process took
/// the killed server's port for a while, which makes two outages).
fn assert_once_per_outage(logs: &str) {
    let mut outages = 0;
    let mut out = false;
    for line in logs.lines() {
        if line.contains("the Redis cache is unreachable") {
            assert!(!out, "logged twice in one outage:\n{logs}");
            out = true;
            outages += 1;
        } else if line.contains("the Redis cache answers again") {
            out = false;
        }
    }
    assert!(outages >= 1, "the outage was logged:\n{logs}");
}

#[tokio::test]
async fn a_redis_that_is_down_is_a_miss_and_caching_resumes_when_it_is_back() {
    let logs = logs();
    if !common::private_redis::available("cache-outage") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::None).await;
    let cache = RedisCache::connect(server.url())
        .prefix(LOGGED)
        .retry_interval(Duration::from_millis(50))
        .await
        .unwrap();
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache.clone());
    one.price(1).await;
    one.price(1).await;
    assert_eq!(shop.runs(), 1);

    server.kill();
    for round in 0..5u32 {
        assert_eq!(one.price(2).await, 2, "answered while Redis is down");
        assert_eq!(shop.runs(), 2 + round, "every query runs the handler");
    }
    assert!(cache.is_unreachable());
    eventually("no near-cache without invalidations", || async {
        !cache.near_cache_active()
    })
    .await;
    assert_once_per_outage(&ours(logs));

    server.restart().await;
    let mut sku = 100;
    within(Duration::from_secs(10), "caching resumes", || {
        sku += 1;
        let one = &one;
        let shop = &shop;
        async move {
            one.price(sku).await;
            let runs = shop.runs();
            one.price(sku).await;
            shop.runs() == runs
        }
    })
    .await;
    eventually("the near-cache is back", || async {
        cache.near_cache_active()
    })
    .await;
    let logs = ours(logs);
    assert_once_per_outage(&logs);
    assert!(logs.contains("the Redis cache answers again"), "{logs}");
}

#[tokio::test]
async fn an_invalidation_made_while_redis_is_down_lands_when_it_is_back() {
    logs();
    if !common::private_redis::available("cache-outage-invalidation") {
        return;
    }
    // The server keeps its data across the restart: the old reply is still there after it.
    let mut server = PrivateRedis::start(Persistence::AppendOnly).await;
    let connect = || {
        RedisCache::connect(server.url())
            .prefix("outage")
            .retry_interval(Duration::from_millis(50))
    };
    let shop = Arc::new(Shop::default());
    shop.price.store(100, Ordering::SeqCst);
    let a = Instance::new(&shop, connect().await.unwrap());
    let b = Instance::new(&shop, connect().await.unwrap());
    assert_eq!(a.price(1).await, 101);
    assert_eq!(b.price(1).await, 101);
    assert_eq!(shop.runs(), 1);

    server.kill();
    shop.price.store(200, Ordering::SeqCst);
    a.app.publish(PriceChanged).await.unwrap();
    assert_eq!(a.price(1).await, 201, "A never serves what it invalidated");

    server.restart().await;
    eventually("A's invalidation reaches Redis and B", || async {
        b.price(1).await == 201
    })
    .await;
    assert_eq!(a.price(1).await, 201);
}

#[tokio::test]
async fn a_malformed_value_in_a_cache_key_is_a_miss() {
    logs();
    let Some(server) = Server::get("cache-malformed").await else {
        return;
    };
    let shop = Arc::new(Shop::default());
    let one = Instance::new(&shop, cache(&server).await);
    let mut raw = server.raw().await;
    let entry = |sku: u64| format!("{}:cache:{{GetPrice}}:{sku}", server.prefix);

    // Not the cache's format at all.
    let () = raw.set(entry(1), "garbage").await.unwrap();
    assert_eq!(one.price(1).await, 1);
    assert_eq!(shop.runs(), 1, "a miss");

    // The cache's format and generation, but a reply that does not decode.
    one.price(2).await;
    let generation: String = raw
        .get(format!("{}:cache:{{GetPrice}}", server.prefix))
        .await
        .unwrap();
    let far = u64::MAX / 2;
    let () = raw
        .set(entry(3), format!("v1:{generation}:{far}:not json"))
        .await
        .unwrap();
    let () = raw
        .set(entry(4), format!("v1:{generation}:soon:{{}}"))
        .await
        .unwrap();
    let runs = shop.runs();
    assert_eq!(one.price(3).await, 3);
    assert_eq!(one.price(4).await, 4);
    assert_eq!(shop.runs(), runs + 2, "both misses");

    // Each was replaced by a good reply.
    for sku in [1, 3, 4] {
        let stored: Vec<u8> = raw.get(entry(sku)).await.unwrap();
        assert!(stored.starts_with(b"v1:"), "{sku}: {stored:?}");
    }
    let runs = shop.runs();
    for sku in [1, 3, 4] {
        one.price(sku).await;
    }
    assert_eq!(shop.runs(), runs, "cached now");
}

#[tokio::test]
async fn options_are_checked_before_connecting_and_a_dead_server_is_unreachable() {
    logs();
    // Nothing listens on port 1: only the option checks could pass or fail before connecting.
    let refused = RedisCache::connect("redis://127.0.0.1:1")
        .near_capacity(0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ConnectError::InvalidOption {
                option: "near_capacity",
                ..
            }
        ),
        "{refused:?}"
    );
    let refused = RedisCache::connect("redis://127.0.0.1:1")
        .prefix("a b")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ConnectError::InvalidOption {
                option: "prefix",
                ..
            }
        ),
        "{refused:?}"
    );
    let unreachable = RedisCache::connect("redis://:secret@127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, ConnectError::Unreachable { .. }),
        "{unreachable:?}"
    );
    assert!(!unreachable.to_string().contains("secret"));
}
