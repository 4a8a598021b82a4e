//! Where reads go: the primary, or its replicas, with read-your-writes for keys this process
//! wrote a moment ago. The routing itself (which replica, which are left out, the window) is
//! shared with the cache, in `crate::connection::replicas`.

use std::time::Duration;

pub(crate) use crate::connection::{ReadAt, ReplicaOptions, Routing, connect_replicas};

/// Which servers serve reads that may be a moment old. Writes, scripts, and every read whose
/// answer decides a write always go to the primary.
///
/// What may be read from a replica:
/// - event-stream loads ([`RedisEventStore`](super::RedisEventStore)'s `load`, an `XRANGE`),
/// - saga loads ([`RedisSagaStore`](super::RedisSagaStore), an `HMGET`),
/// - cached query lookups of [`RedisCache`](crate::RedisCache) (its `MGET` of the query's
///   generation and the entry; see
///   [`RedisCacheConnect::read_from`](crate::cache::RedisCacheConnect::read_from)).
///
/// Idempotency is never read from a replica: a claim is one script on the primary that both
/// reads and claims, and there is no read-only idempotency operation.
///
/// **Which replicas.** Those given with `.replica(url)`, else those the primary's `ROLE`
/// lists. They are found when connecting, then again every [`REPLICA_REFRESH`] while the
/// stores or the cache live: a given replica that could not be reached (down at connect
/// time, started later), and a replica the primary newly lists, are read from once they
/// answer and are in sync; one the primary no longer lists is no longer read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every read from the primary (the default): always the latest value.
    #[default]
    Primary,
    /// Reads from a replica while one answers, else from the primary. A replica that fails a
    /// read (down, timed out) is left out for [`REPLICA_BACKOFF`] and the read goes to the
    /// primary: a read never fails because a replica did. With no replica found yet, every
    /// read goes to the primary until one is (within [`REPLICA_REFRESH`] of it answering).
    PreferReplica,
    /// Reads only from replicas: a store read fails (with a retryable error) when no replica
    /// answers or none is known, a cache lookup is a miss then. Connecting fails when no
    /// replica can be reached. For keeping read load off the primary entirely.
    Replica,
}

/// How long a replica that failed a read is left out before it is tried again.
pub const REPLICA_BACKOFF: Duration = Duration::from_secs(5);

/// How often, with [`ReadFrom`] other than [`ReadFrom::Primary`], the replicas are looked
/// for again while running: a replica given with `.replica(url)` and not connected yet is
/// connected, and without one given the primary's `ROLE` is read again, a replica it newly
/// lists is connected (once it is in sync) and one it no longer lists is no longer read. The
/// same as [`REPLICA_BACKOFF`]: a replica that comes back is used again about as soon as one
/// left out would be. Each of [`RedisStores`](super::RedisStores) and
/// [`RedisCache`](crate::RedisCache) runs one task for it, which ends when they are dropped;
/// with `ReadFrom::Primary` there is none.
pub const REPLICA_REFRESH: Duration = Duration::from_secs(5);

/// Read-your-writes window unless configured: a key this process wrote less than this long
/// ago is read from the primary, whatever [`ReadFrom`] says. On loopback a replica is well
/// under a millisecond behind; a second covers a replica under load or across a data centre
/// (Redis's `INFO replication` shows the offset lag to set it by).
pub const DEFAULT_READ_YOUR_WRITES: Duration = Duration::from_secs(1);
