//! Caching query replies: a TTL, invalidation by events, one load for concurrent misses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use foldhash::fast::RandomState;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::AnyMessage;
use crate::message::{MessageInfo, MessageKind};
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;
use crate::registry::MessageDescriptor;

/// The key a query declares for caching, instead of its JSON form (which is the default).
///
/// ```
/// use catga_core::behavior::CacheKey;
///
/// struct GetOrder { id: u64, trace: String }
///
/// impl CacheKey for GetOrder {
///     fn cache_key(&self) -> String {
///         self.id.to_string() // `trace` does not change the answer
///     }
/// }
/// ```
pub trait CacheKey {
    /// The key; queries with equal keys have equal replies.
    fn cache_key(&self) -> String;
}

/// Caches the replies of queries that ask for it, so repeated reads skip the handler.
///
/// A query is cached when it declares `#[query(cache_ttl = "30s")]` (or, with
/// [`Caching::default_ttl`], every query). Its key is its [`CacheKey`] or its JSON form.
/// Replies are dropped when their TTL ends, when an event the query names in
/// `invalidated_by(OrderPlaced, …)` is published (through this application, even with no
/// handler, or by any process on the application's transport: every instance of every
/// service that serves sees it, not only the one instance its service's share of the event
/// goes to), or on [`Caching::invalidate`]. After a transport reconnects, the replies of
/// every query with `invalidated_by` are dropped, since an invalidation may have been missed.
/// Concurrent misses of one key run the handler once and share its reply (single flight); a
/// load that ends without a reply, however it ends (an error, a deadline, a cancellation, a
/// dropped future, a panic), wakes whoever waits for it, and the first of them loads instead.
/// Errors are not cached. `skip(caching)` exempts a query;
/// `local` queries are not cached (their replies have no stored form).
///
/// ```rust,standalone_crate
/// use catga_core::prelude::*;
/// use catga_core::behavior::Caching;
///
/// #[event]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct PriceChanged { pub sku: u64 }
///
/// #[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged))]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct GetPrice { pub sku: u64 }
///
/// #[handler]
/// async fn price(q: GetPrice) -> Result<u64, std::io::Error> { Ok(q.sku * 100) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Catga::builder().layer(Caching::new()).build()?;
/// assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // runs the handler
/// assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // from the cache
/// app.publish(PriceChanged { sku: 3 }).await?;            // drops GetPrice's replies
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Caching {
    default_ttl: Option<Duration>,
    max_entries: usize,
    caches: PerMessage<QueryCache>,
    /// Event wire name → the queries it invalidates, from every query's `invalidated_by`.
    invalidates: OnceLock<HashMap<&'static str, Vec<&'static MessageInfo>>>,
}

impl Default for Caching {
    fn default() -> Self {
        Self::new()
    }
}

impl Caching {
    /// Caches the queries that declare `cache_ttl`, at most 10,000 replies per query.
    pub fn new() -> Self {
        Caching {
            default_ttl: None,
            max_entries: 10_000,
            caches: PerMessage::default(),
            invalidates: OnceLock::new(),
        }
    }

    /// Also caches queries without `cache_ttl`, for `ttl`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The most replies kept per query; beyond it, expired replies go first, then any.
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }

    /// Drops every cached reply of `Q`.
    pub fn invalidate<Q: crate::Query>(&self) {
        if let Some(cache) = self.caches.get(Q::info()) {
            cache.clear(Q::NAME);
        }
    }

    /// How many replies of `Q` are cached.
    pub fn cached<Q: crate::Query>(&self) -> usize {
        self.caches.get(Q::info()).map_or(0, QueryCache::len)
    }

    /// Drops the replies of every query `event` invalidates.
    fn invalidate_by(&self, event: &str) {
        let map = self.invalidation_map();
        if map.is_empty() {
            return;
        }
        if let Some(queries) = map.get(event) {
            for query in queries {
                if let Some(cache) = self.caches.get(query) {
                    cache.clear(query.name());
                }
            }
        }
    }

    fn invalidation_map(&self) -> &HashMap<&'static str, Vec<&'static MessageInfo>> {
        self.invalidates.get_or_init(|| {
            let mut map: HashMap<&'static str, Vec<&'static MessageInfo>> = HashMap::new();
            for descriptor in inventory::iter::<MessageDescriptor> {
                let query = (descriptor.info)();
                for event in query.policy().invalidated_by {
                    map.entry(event().name()).or_default().push(query);
                }
            }
            map
        })
    }
}

const SHARDS: usize = 8;

/// A shard of one query's replies, by key.
type Shard = HashMap<Vec<u8>, Slot, RandomState>;

/// One query's cached replies.
#[derive(Debug)]
struct QueryCache {
    shards: Box<[Mutex<Shard>]>,
    /// Bumped by every invalidation: a load that started before one must not be cached.
    generation: AtomicU64,
    /// Registered once: a labelled counter looked up per call costs more than a hit.
    hits: metrics::Counter,
    misses: metrics::Counter,
}

#[derive(Debug)]
enum Slot {
    Ready { reply: Arc<[u8]>, until: Instant },
    Loading(Arc<Notify>),
}

impl QueryCache {
    fn new(query: &'static str) -> Self {
        QueryCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            generation: AtomicU64::new(0),
            hits: metrics::counter!("catga_cache_hits_total", "message" => query),
            misses: metrics::counter!("catga_cache_misses_total", "message" => query),
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let spread = key.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        self.shards[spread % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn clear(&self, query: &'static str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Loads in flight keep their slot so waiters are woken when they finish.
            shard.retain(|_, slot| matches!(slot, Slot::Loading(_)));
        }
        metrics::counter!("catga_cache_invalidations_total", "message" => query).increment(1);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .filter(|slot| matches!(slot, Slot::Ready { .. }))
                    .count()
            })
            .sum()
    }
}

/// What a lookup found.
enum Lookup<'c> {
    Hit(Arc<[u8]>),
    /// Someone is loading this key: wait for it, then look again.
    Wait(Arc<Notify>),
    /// We are loading it: the guard ends the load.
    Load(LoadGuard<'c>),
}

/// Removes a `Loading` slot and wakes its waiters, however the load ends (success, error,
/// cancellation), unless a reply replaced it.
struct LoadGuard<'c> {
    cache: &'c QueryCache,
    key: Vec<u8>,
    done: Arc<Notify>,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let mut shard = self.cache.shard(&self.key);
        if matches!(shard.get(&self.key), Some(Slot::Loading(n)) if Arc::ptr_eq(n, &self.done)) {
            shard.remove(&self.key);
        }
        drop(shard);
        self.done.notify_waiters();
    }
}

impl QueryCache {
    fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(Slot::Ready { reply, until }) if *until > now => {
                return Lookup::Hit(reply.clone());
            }
            Some(Slot::Loading(done)) => return Lookup::Wait(done.clone()),
            _ => {}
        }
        let done = Arc::new(Notify::new());
        shard.insert(key.to_vec(), Slot::Loading(done.clone()));
        Lookup::Load(LoadGuard {
            cache: self,
            key: key.to_vec(),
            done,
        })
    }

    fn store(
        &self,
        guard: &LoadGuard<'_>,
        reply: Vec<u8>,
        ttl: Duration,
        max: usize,
        generation: u64,
    ) {
        let mut shard = self.shard(&guard.key);
        if self.generation.load(Ordering::Acquire) != generation {
            return; // Invalidated while loading: this reply may be stale.
        }
        let per_shard = (max / SHARDS).max(1);
        if shard.len() > per_shard {
            let now = Instant::now();
            shard.retain(|_, slot| !matches!(slot, Slot::Ready { until, .. } if *until <= now));
            if shard.len() > per_shard
                && let Some(victim) = shard
                    .iter()
                    .find(|(_, slot)| matches!(slot, Slot::Ready { .. }))
                    .map(|(k, _)| k.clone())
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            guard.key.clone(),
            Slot::Ready {
                reply: Arc::from(reply),
                until: Instant::now() + ttl,
            },
        );
    }
}

impl Behavior for Caching {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        let ttl = info.policy().cache_ttl.or(self.default_ttl);
        let Some(ttl) = ttl.filter(|_| {
            info.kind() == MessageKind::Query
                && info.is_wire()
                && !info.policy().skip.contains(Skip::CACHING)
        }) else {
            return next.run(msg).await;
        };
        let key = match msg.message().cache_key() {
            Some(key) => key.into_bytes(),
            None => match msg.message().encode_json() {
                Ok(json) => json,
                Err(_) => return next.run(msg).await,
            },
        };
        let cache = self
            .caches
            .get_or_init(info, || QueryCache::new(info.name()));
        let guard = loop {
            match cache.lookup(&key) {
                Lookup::Hit(reply) => {
                    cache.hits.increment(1);
                    return P::decode_output(info, &reply).map_err(|source| {
                        ErrorKind::Codec {
                            message: info.name().to_string(),
                            source,
                        }
                        .into()
                    });
                }
                Lookup::Wait(done) => {
                    let notified = done.notified();
                    // The loader may have finished between the lookup and now: look again
                    // rather than wait forever if so.
                    if matches!(cache.shard(&key).get(&key), Some(Slot::Loading(n)) if Arc::ptr_eq(n, &done))
                    {
                        notified.await;
                    }
                }
                Lookup::Load(guard) => break guard,
            }
        };
        cache.misses.increment(1);
        let generation = cache.generation.load(Ordering::Acquire);
        let result = next.run(msg).await;
        if let Ok(output) = &result
            && let Ok(reply) = P::encode_output(info, output)
        {
            cache.store(&guard, reply, ttl, self.max_entries, generation);
        }
        drop(guard);
        result
    }

    fn observe_publish(&self, event: &dyn AnyMessage, _ctx: &Context) {
        self.invalidate_by(event.info().name());
    }

    fn observed_events(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.invalidation_map().keys().copied().collect();
        names.sort_unstable();
        names
    }

    fn observe_remote(&self, name: &str) {
        self.invalidate_by(name);
    }
}
