//! Where a lookup reads: the primary, or one of its replicas.
//!
//! Only the lookup's `MGET` (the query's generation and the entry) may go to a replica, and
//! only with [`ReadFrom::PreferReplica`] or [`ReadFrom::Replica`]; the store script and the
//! invalidations always run on the primary.
//!
//! **Consistency.** A replica may lag behind the primary. So after this process invalidates a
//! query (the whole query or one key), and after it hears another instance's invalidation of
//! the query on the subscription, the query's lookups go to the primary for the
//! read-your-writes window (the routing marks the query's generation key as written). A
//! message the cache cannot read, or a subscription that comes back after a loss (messages
//! may have been missed meanwhile), sends every lookup to the primary for the window; while
//! the subscription is down, lookups stay on the primary. A replica that still serves an old
//! generation can cause a miss, but never put an old reply back: the store script refuses a
//! reply whose miss saw an older generation than the primary's. Without the near-cache there
//! is no subscription: other instances' invalidations are then seen after the replica's lag.
//!
//! **Failures.** A replica that fails the read (an error, or no answer within `timeout`) is
//! left out for [`REPLICA_BACKOFF`](crate::store::REPLICA_BACKOFF), logged once per run of
//! failures. With `PreferReplica` the lookup then reads the primary at once; with `Replica`
//! it is a miss (the handler runs, its reply is not stored), and while every replica is left
//! out, or none is known, lookups are misses without trying one. A replica's failure is not
//! an outage of the cache: the primary's health is its own.
//!
//! **Which replicas.** Those the routing knows now: found when connecting, then again every
//! [`REPLICA_REFRESH`](crate::store::REPLICA_REFRESH) (see `crate::connection::replicas`).
//! A lookup takes the replica it reads (an `Arc`) and never waits for that search.

use std::sync::Arc;
use std::time::Instant;

use super::health::TimedOut;
use super::{QueryInner, Shared};
use crate::connection::{ReadAt, Replica};
use crate::error::CommandError;
use crate::store::ReadFrom;

/// What a lookup's `MGET` returns: the generation and the entry, either possibly absent.
pub(crate) type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Where one lookup reads.
enum Route {
    Primary,
    Replica(Arc<Replica>),
    /// `ReadFrom::Replica` with every replica left out, or none known: no read, a miss.
    Nowhere,
}

impl Shared {
    /// Where a lookup of `query` reads now.
    fn route(&self, query: &QueryInner) -> Route {
        if !self.routing.uses_replicas() {
            return Route::Primary;
        }
        // During an outage the one lookup let through is a probe of the primary: only its
        // answer ends the outage.
        if self.health.is_out() {
            return Route::Primary;
        }
        // Other instances' invalidations are heard on the subscription: while it is down,
        // they are not, and a replica might serve what one of them dropped.
        if self.config.near_cache && !self.subscribed.load(std::sync::atomic::Ordering::Acquire) {
            return Route::Primary;
        }
        match self.routing.replica_for(&query.generation_key[..]) {
            ReadAt::Primary => Route::Primary,
            ReadAt::Replica(replica) if replica.is_up(Instant::now()) => Route::Replica(replica),
            ReadAt::Replica(_) | ReadAt::NoReplica => Route::Nowhere,
        }
    }

    /// Reads `query`'s generation and `entry` (one `MGET`): on a replica when the routing
    /// allows it, else on the primary. `None` when nothing answered (the lookup is a miss
    /// and its reply is not stored); a failure of the primary is recorded in the cache's
    /// health, one of a replica is not.
    pub(crate) async fn read(&self, query: &QueryInner, entry: &[u8]) -> Option<Pair> {
        let mut mget = redis::cmd("MGET");
        mget.arg(&query.generation_key).arg(entry);
        match self.route(query) {
            Route::Primary => {}
            Route::Nowhere => return None,
            Route::Replica(replica) => {
                let mut conn = replica.manager.clone();
                let read = tokio::time::timeout(self.config.timeout, mget.query_async(&mut conn));
                let failure: Box<dyn std::error::Error + Send + Sync> = match read.await {
                    Ok(Ok(pair)) => return Some(pair),
                    Ok(Err(error)) => Box::new(CommandError::new(
                        "MGET",
                        String::from_utf8_lossy(&query.generation_key),
                        error,
                    )),
                    Err(_) => Box::new(TimedOut {
                        command: "MGET",
                        after: self.config.timeout,
                    }),
                };
                let fall_back = self.routing.read_from != ReadFrom::Replica;
                if replica.mark_down() {
                    tracing::warn!(target: "catga::redis::cache", prefix = %self.config.prefix,
                        replica = %replica.addr, error = &*failure as &dyn std::error::Error,
                        fall_back, "a replica failed a cache lookup; it is left out for a while \
                        (with `PreferReplica` lookups read the primary, with `Replica` they are \
                        misses)");
                }
                if !fall_back {
                    return None;
                }
            }
        }
        let mut manager = self.manager.clone();
        let read = tokio::time::timeout(self.config.timeout, mget.query_async(&mut manager)).await;
        self.settle("MGET", &query.generation_key, read)
    }

    /// Notes that `query`'s replies changed just now (an invalidation made here, or heard):
    /// its lookups read the primary for the read-your-writes window.
    pub(crate) fn changed(&self, query_name: &str) {
        if self.routing.uses_replicas() {
            self.routing
                .wrote(&super::generation_key(&self.config.prefix, query_name)[..]);
        }
    }
}
