//! Leases with fencing tokens: who may do a piece of work that only one instance may do.
//!
//! A lease is a name (`"outbox-recovery"`, `"scheduler"`) that at most one *holder* holds at a
//! time, for a time to live (TTL) counted by the store's clock; the holder renews it before it
//! runs out, and releases it when it stops. Every grant carries a [`FencingToken`] greater than
//! every token granted for that name before. Leases alone cannot stop two holders from acting
//! at once (a holder paused past its lease, by a garbage collector, `SIGSTOP` or a slow
//! network, wakes up believing it still holds it); the token can: a store that the work
//! writes to remembers the highest token it has seen for the lease and refuses a write that
//! carries a lower one ([`TokenFloor`]). This is the design Martin Kleppmann describes in
//! "How to do distributed locking" (2016), and what Chubby calls a sequencer.
//!
//! A lease is granted, renewed and released through a [`LeaseStore`]: in memory
//! ([`MemoryLeaseStore`](super::memory_lease::MemoryLeaseStore), one process), on Redis, on
//! PostgreSQL and on NATS JetStream's key-value store (the adapters). Every implementation
//! passes the same conformance suite (`catga_core::testkit::stores::lease`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::BoxError;

/// A number that grows with every grant of one lease: every grant of a name (after a release
/// or an expiry, to any holder) gets a greater token than every earlier grant of it, the
/// first at least 1 (1 in memory, on Redis and on PostgreSQL; on NATS key-value, an entry's
/// revision). Renewing a grant keeps its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The token with value `value`.
    pub const fn new(value: u64) -> FencingToken {
        FencingToken(value)
    }

    /// Its value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A lease held: what [`LeaseStore::acquire`] grants and [`LeaseStore::renew`] and
/// [`LeaseStore::release`] take back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Its fencing token.
    pub token: FencingToken,
    /// How long it was granted or last renewed for, counted by the store's clock from the
    /// moment the store granted it. The holder counts it from before it asked (its own clock),
    /// so it believes it holds the lease a little less long than the store does.
    pub ttl: Duration,
}

/// A lease as [`LeaseStore::observe`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody holds it: never granted, released, or run out.
    Vacant,
    /// Held by `holder` with `token`, for at most `remaining` more by the store's clock.
    Held {
        /// Who holds it.
        holder: String,
        /// The grant's fencing token.
        token: FencingToken,
        /// How long it still runs unless renewed.
        remaining: Duration,
    },
}

/// Where leases are granted. Implementations must be safe to call concurrently, from many
/// processes for a shared store, and must keep these promises (the conformance suite checks
/// each):
///
/// * **At most one holder.** While a grant runs (it was granted or renewed less than its TTL
///   ago, by the store's clock) no other grant of the name is given, to any holder, the same
///   holder included: a holder that wants more time renews.
/// * **Tokens only grow.** Each grant's token is greater than every earlier grant's of the
///   name, across releases, expiries and restarts of the store's server (for a store that
///   keeps data).
/// * **A grant that ran out is lost.** Once its TTL has passed without a renewal, it cannot be
///   renewed or released, even if nobody took the lease since; its holder must acquire anew
///   (and gets a new token).
/// * **Names are independent.**
pub trait LeaseStore: Send + Sync + 'static {
    /// Grants the lease `name` to `holder` for `ttl` if nobody holds it; `None` if a grant of
    /// it runs.
    ///
    /// # Errors
    /// The store could not be reached or answered with something it did not write.
    fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Grant>, BoxError>> + Send;

    /// Extends `grant` to `ttl` from now if it still runs (same token, not run out); `false`
    /// if it was lost (ran out, released, or granted to another since).
    ///
    /// # Errors
    /// The store could not be reached; the holder must then assume the grant ends when its
    /// own count of the TTL does.
    fn renew(
        &self,
        grant: &Grant,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Ends `grant` at once if it still runs, so another holder can be granted the lease
    /// without waiting for it to run out; `false` if it had been lost already.
    ///
    /// # Errors
    /// The store could not be reached (the grant then runs out by itself).
    fn release(&self, grant: &Grant) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Who holds `name` now, by the store's clock.
    ///
    /// # Errors
    /// The store could not be reached or answered with something it did not write.
    fn observe(&self, name: &str) -> impl Future<Output = Result<LeaseState, BoxError>> + Send;
}

/// Why a fenced write was refused: it carried a token lower than one the resource has seen,
/// so a newer holder of the lease exists and this writer must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "stale fencing token {presented}: the resource has seen token {seen}; a newer holder of the lease exists"
)]
pub struct StaleToken {
    /// The token the write carried.
    pub presented: FencingToken,
    /// The highest token the resource had seen.
    pub seen: FencingToken,
}

/// The highest fencing token a resource has seen, in memory: a write that carries a lower one
/// is refused with [`StaleToken`]. What an in-memory store keeps per lease; the adapters'
/// stores keep the same number in their database, checked in the same statement as the write.
#[derive(Debug, Default)]
pub struct TokenFloor {
    seen: std::sync::atomic::AtomicU64,
}

impl TokenFloor {
    /// A floor that has seen no token.
    pub const fn new() -> TokenFloor {
        TokenFloor {
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Admits a write carrying `token`: raises the floor to it, or refuses it if the floor is
    /// higher.
    ///
    /// # Errors
    /// [`StaleToken`] when a higher token was seen.
    pub fn admit(&self, token: FencingToken) -> Result<(), StaleToken> {
        let seen = self
            .seen
            .fetch_max(token.get(), std::sync::atomic::Ordering::AcqRel);
        if seen > token.get() {
            return Err(StaleToken {
                presented: token,
                seen: FencingToken(seen),
            });
        }
        Ok(())
    }

    /// The highest token seen (0 for none).
    pub fn seen(&self) -> FencingToken {
        FencingToken(self.seen.load(std::sync::atomic::Ordering::Acquire))
    }
}
