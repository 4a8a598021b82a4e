//! Where reads go: the primary, or its replicas, with read-your-writes for keys this process
//! wrote a moment ago. The routing itself (which replica, which are left out, the window) is
//! shared with the cache, in `crate::connection::replicas`.

use std::time::Duration;

pub(crate) use crate::connection::{Replica, Routing, connect_replicas};

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every read from the primary (the default): always the latest value.
    #[default]
    Primary,
    /// Reads from a replica while one answers, else from the primary. A replica that fails a
    /// read (down, timed out) is left out for [`REPLICA_BACKOFF`] and the read goes to the
    /// primary: a read never fails because a replica did.
    PreferReplica,
    /// Reads only from replicas: a store read fails when no replica answers (a cache lookup
    /// is a miss then). For keeping read load off the primary entirely.
    Replica,
}

/// How long a replica that failed a read is left out before it is tried again.
pub const REPLICA_BACKOFF: Duration = Duration::from_secs(5);

/// Read-your-writes window unless configured: a key this process wrote less than this long
/// ago is read from the primary, whatever [`ReadFrom`] says. On loopback a replica is well
/// under a millisecond behind; a second covers a replica under load or across a data centre
/// (Redis's `INFO replication` shows the offset lag to set it by).
pub const DEFAULT_READ_YOUR_WRITES: Duration = Duration::from_secs(1);
