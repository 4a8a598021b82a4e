//! The default [`CacheBackend`]: replies in this process's memory, per query, in a few
//! mutex-guarded shards.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foldhash::fast::RandomState;
use tokio::time::Instant;

use super::backend::{CacheBackend, CacheLookup};

const SHARDS: usize = 8;

/// Replies in this process's memory: what [`Caching::new`](super::Caching::new) uses.
///
/// Each query keeps at most [`max_entries`](Self::max_entries) replies (10,000 by default);
/// beyond it, expired replies go first, then any. Invalidations reach this process only:
/// with several instances of a service, each has its own copy (they hear the events that
/// invalidate them through the transport), or use a shared backend such as
/// `catga_redis::RedisCache`.
#[derive(Debug, Clone)]
pub struct MemoryCache {
    max_entries: usize,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCache {
    /// At most 10,000 replies per query.
    pub fn new() -> Self {
        MemoryCache {
            max_entries: 10_000,
        }
    }

    /// The most replies kept per query (at least 1; 0 is taken as 1); beyond it, expired
    /// replies go first, then any.
    #[must_use]
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }
}

/// One shard of a query's replies, by key.
type Shard = HashMap<Vec<u8>, Entry, RandomState>;

#[derive(Debug)]
struct Entry {
    reply: Arc<[u8]>,
    until: Instant,
}

/// One query's replies in a [`MemoryCache`]. Made by [`CacheBackend::query`]; opaque.
#[derive(Debug)]
pub struct MemoryQuery {
    shards: Box<[Mutex<Shard>]>,
    /// Bumped by every invalidation: a load that started before one must not be stored.
    generation: AtomicU64,
}

impl MemoryQuery {
    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let spread = key.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        self.shards[spread % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, key: &[u8]) -> CacheLookup<u64> {
        // Read first: an invalidation after this makes the ticket stale.
        let generation = self.generation.load(Ordering::Acquire);
        let now = Instant::now();
        match self.shard(key).get(key) {
            Some(entry) if entry.until > now => CacheLookup::Hit(entry.reply.clone()),
            _ => CacheLookup::Miss(generation),
        }
    }

    fn store(&self, key: &[u8], reply: Arc<[u8]>, ttl: Duration, max: usize, generation: u64) {
        let mut shard = self.shard(key);
        if self.generation.load(Ordering::Acquire) != generation {
            return; // Invalidated while loading: this reply may be stale.
        }
        let per_shard = (max / SHARDS).max(1);
        if shard.len() >= per_shard && !shard.contains_key(key) {
            let now = Instant::now();
            shard.retain(|_, entry| entry.until > now);
            if shard.len() >= per_shard
                && let Some(victim) = shard.keys().next().cloned()
            {
                shard.remove(&victim);
            }
        }
        let until = Instant::now()
            .checked_add(ttl)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        shard.insert(key.to_vec(), Entry { reply, until });
    }

    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    fn remove(&self, key: &[u8]) {
        // Loads of other keys in flight are not stored either: cheaper than a generation per
        // key, and only costs them their store.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.shard(key).remove(key);
    }

    fn len(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .filter(|entry| entry.until > now)
                    .count()
            })
            .sum()
    }
}

impl CacheBackend for MemoryCache {
    type Query = MemoryQuery;
    type Ticket = u64;

    fn query(&self, _name: &'static str) -> MemoryQuery {
        MemoryQuery {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            generation: AtomicU64::new(0),
        }
    }

    #[inline]
    fn get(
        &self,
        query: &MemoryQuery,
        key: &[u8],
    ) -> impl Future<Output = CacheLookup<u64>> + Send {
        ready(query.lookup(key))
    }

    fn put(
        &self,
        query: &MemoryQuery,
        key: &[u8],
        reply: Arc<[u8]>,
        ttl: Duration,
        ticket: u64,
    ) -> impl Future<Output = ()> + Send {
        query.store(key, reply, ttl, self.max_entries, ticket);
        ready(())
    }

    fn invalidate_query(&self, query: &MemoryQuery) -> impl Future<Output = ()> + Send + 'static {
        query.clear();
        ready(())
    }

    fn invalidate_key(
        &self,
        query: &MemoryQuery,
        key: &[u8],
    ) -> impl Future<Output = ()> + Send + 'static {
        query.remove(key);
        ready(())
    }

    fn cached(&self, query: &MemoryQuery) -> usize {
        query.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(lookup: CacheLookup<u64>) -> Option<Arc<[u8]>> {
        match lookup {
            CacheLookup::Hit(reply) => Some(reply),
            CacheLookup::Miss(_) => None,
        }
    }

    fn ticket(lookup: CacheLookup<u64>) -> u64 {
        match lookup {
            CacheLookup::Hit(_) => panic!("expected a miss"),
            CacheLookup::Miss(ticket) => ticket,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_loaded_across_an_invalidation_is_not_stored() {
        let cache = MemoryCache::new();
        let q = cache.query("Q");
        let stale = ticket(q.lookup(b"k"));
        cache.invalidate_query(&q).await;
        cache
            .put(
                &q,
                b"k",
                Arc::from(&b"1"[..]),
                Duration::from_secs(5),
                stale,
            )
            .await;
        assert!(hit(q.lookup(b"k")).is_none(), "stale ticket: not stored");
        let fresh = ticket(q.lookup(b"k"));
        cache
            .put(
                &q,
                b"k",
                Arc::from(&b"2"[..]),
                Duration::from_secs(5),
                fresh,
            )
            .await;
        assert_eq!(hit(q.lookup(b"k")).as_deref(), Some(&b"2"[..]));
        cache.invalidate_key(&q, b"k").await;
        assert!(hit(q.lookup(b"k")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn replies_expire_and_the_query_keeps_at_most_its_maximum() {
        let cache = MemoryCache::new().max_entries(SHARDS);
        let q = cache.query("Q");
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            let t = ticket(q.lookup(&key));
            q.store(
                &key,
                Arc::from(&b"x"[..]),
                Duration::from_secs(1),
                SHARDS,
                t,
            );
        }
        assert!(cache.cached(&q) <= SHARDS, "{}", cache.cached(&q));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.cached(&q), 0, "expired");
    }
}
