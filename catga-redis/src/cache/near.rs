//! The near-cache: replies this process read from (or wrote to) Redis, kept in its memory so a
//! repeated hit costs no round trip.
//!
//! An entry lives until the first of: its reply's own expiry, the near-cache's TTL cap, an
//! invalidation of its query or key (this process's, or another's heard on the invalidation
//! channel), or the loss of the invalidation subscription (while this process cannot hear
//! invalidations, it keeps nothing near).
//!
//! **Fencing.** A reply read from Redis just before another process invalidated it must not
//! be kept after the invalidation was heard. Each query has an epoch, bumped by every
//! invalidation heard; a reader notes the epoch before it sends its read and keeps the reply
//! only if the epoch has not moved, checked under the shard lock the invalidation also takes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

const SHARDS: usize = 8;

/// One shard of a query's near entries, by key.
type Shard = HashMap<Vec<u8>, Entry>;

/// One query's near entries.
#[derive(Debug)]
pub(crate) struct Near {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Bumped by every invalidation of the query (or one of its keys) this process hears.
    epoch: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    reply: Arc<[u8]>,
    until: Instant,
}

impl Near {
    /// At most `capacity` entries (about: it is split evenly between shards).
    pub(crate) fn new(capacity: usize) -> Self {
        Near {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
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

    /// The epoch to note before reading Redis, for [`keep`](Self::keep).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The reply kept for `key`, if it has not expired.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Arc<[u8]>> {
        let shard = self.shard(key);
        let entry = shard.get(key)?;
        (entry.until > now).then(|| entry.reply.clone())
    }

    /// Keeps `reply` for `key` until `until`, unless an invalidation was heard since the
    /// epoch was `seen`.
    pub(crate) fn keep(&self, key: &[u8], reply: Arc<[u8]>, until: Instant, seen: u64) {
        let mut shard = self.shard(key);
        if self.epoch.load(Ordering::Acquire) != seen {
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(key) {
            let now = Instant::now();
            shard.retain(|_, entry| entry.until > now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().cloned()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key.to_vec(), Entry { reply, until });
    }

    /// Drops every entry, and fences reads in flight.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    /// Drops `key`'s entry, and fences reads in flight (of every key: one epoch per query).
    pub(crate) fn remove(&self, key: &[u8]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.shard(key).remove(key);
    }

    /// How many entries have not expired.
    pub(crate) fn len(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .filter(|entry| entry.until > now)
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn reply(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_crossed_an_invalidation_is_not_kept() {
        let near = Near::new(100);
        let later = Instant::now() + Duration::from_secs(10);
        let seen = near.epoch();
        near.clear(); // heard while the read was on its way
        near.keep(b"k", reply("old"), later, seen);
        assert!(near.get(b"k", Instant::now()).is_none());
        near.keep(b"k", reply("new"), later, near.epoch());
        assert_eq!(near.get(b"k", Instant::now()).as_deref(), Some(&b"new"[..]));
        near.remove(b"k");
        assert_eq!(near.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_capacity_holds() {
        let near = Near::new(16);
        let until = Instant::now() + Duration::from_secs(1);
        for i in 0..1_000u32 {
            near.keep(&i.to_be_bytes(), reply("x"), until, near.epoch());
        }
        assert!(near.len() <= 16, "{}", near.len());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(near.len(), 0);
        assert!(near.get(&0u32.to_be_bytes(), Instant::now()).is_none());
    }
}
