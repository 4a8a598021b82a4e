//! Single flight: concurrent misses of one key in this process run the handler once, and the
//! others wait for its reply, whatever backend stores it.
//!
//! A miss registers a load for its key, unless one is registered (it then waits for that one
//! to end and looks again) or a load of the same shard ended since the miss looked the key up
//! (it then looks again, since the reply may be stored now: without this, a miss that looked
//! just before a load stored its reply would run the handler a second time). The guard of a
//! load removes it and wakes its waiters however the load ends: a reply, an error, a
//! deadline, a cancellation, a dropped future, a panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::fast::RandomState;
use tokio::sync::Notify;

const SHARDS: usize = 8;

/// The loads in flight for one query, by key.
#[derive(Debug)]
pub(super) struct Flights {
    shards: Box<[FlightShard]>,
}

#[derive(Debug)]
struct FlightShard {
    loads: Mutex<HashMap<Vec<u8>, Arc<Notify>, RandomState>>,
    /// Bumped (under the lock) each time a load of this shard ends.
    landed: AtomicU64,
}

/// What [`Flights::begin`] decided.
pub(super) enum Begin<'f> {
    /// This caller loads; the guard ends the load.
    Load(LoadGuard<'f>),
    /// Someone loads this key: wait for it ([`Flights::wait`]), then look again.
    Wait(Arc<Notify>),
    /// A load ended since the caller looked: look again.
    Again,
}

impl Flights {
    pub(super) fn new() -> Self {
        Flights {
            shards: (0..SHARDS)
                .map(|_| FlightShard {
                    loads: Mutex::new(HashMap::with_hasher(RandomState::default())),
                    landed: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn shard(&self, key: &[u8]) -> &FlightShard {
        let spread = key.iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        &self.shards[spread % SHARDS]
    }

    /// Read before looking `key` up; hand it to [`begin`](Self::begin) after a miss.
    pub(super) fn seen(&self, key: &[u8]) -> u64 {
        self.shard(key).landed.load(Ordering::Acquire)
    }

    /// After a miss of `key` looked up when the shard's count was `seen` (`None`: load even if
    /// a load ended since, so a caller cannot be sent back for ever).
    pub(super) fn begin(&self, key: &[u8], seen: Option<u64>) -> Begin<'_> {
        let shard = self.shard(key);
        let mut loads = lock(&shard.loads);
        if let Some(done) = loads.get(key) {
            return Begin::Wait(done.clone());
        }
        if seen.is_some_and(|seen| shard.landed.load(Ordering::Acquire) != seen) {
            return Begin::Again;
        }
        let done = Arc::new(Notify::new());
        loads.insert(key.to_vec(), done.clone());
        Begin::Load(LoadGuard {
            shard,
            key: key.to_vec(),
            done,
        })
    }

    /// Waits until the load `done` belongs to has ended (at once if it already has).
    pub(super) async fn wait(&self, key: &[u8], done: Arc<Notify>) {
        let notified = done.notified();
        // The loader may have finished between `begin` and now: look again rather than wait
        // for ever if so.
        let loading = matches!(
            lock(&self.shard(key).loads).get(key),
            Some(n) if Arc::ptr_eq(n, &done)
        );
        if loading {
            notified.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends a load however it ends: removes it and wakes its waiters.
pub(super) struct LoadGuard<'f> {
    shard: &'f FlightShard,
    key: Vec<u8>,
    done: Arc<Notify>,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let mut loads = lock(&self.shard.loads);
        if matches!(loads.get(&self.key), Some(n) if Arc::ptr_eq(n, &self.done)) {
            loads.remove(&self.key);
        }
        self.shard.landed.fetch_add(1, Ordering::AcqRel);
        drop(loads);
        self.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_miss_waits_and_a_late_one_looks_again() {
        let flights = Flights::new();
        let seen = flights.seen(b"k");
        let Begin::Load(guard) = flights.begin(b"k", Some(seen)) else {
            panic!("the first miss loads");
        };
        assert!(matches!(flights.begin(b"k", Some(seen)), Begin::Wait(_)));
        drop(guard);
        // Looked before the load ended: the reply may be stored now.
        assert!(matches!(flights.begin(b"k", Some(seen)), Begin::Again));
        assert!(matches!(flights.begin(b"k", None), Begin::Load(_)));
        let now = flights.seen(b"k");
        assert!(matches!(flights.begin(b"k", Some(now)), Begin::Load(_)));
    }
}
