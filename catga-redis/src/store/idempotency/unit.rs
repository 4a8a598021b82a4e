//! Recording an idempotent reply in a unit of work's commit: what the Redis outbox's and
//! inbox's commit script needs to write this store's record (see
//! [`PendingReply`](catga_core::store::idempotency::PendingReply)).

use catga_core::store::idempotency::PendingReply;

use super::{RedisIdempotencyStore, millis};
use crate::connection::key_slot;
use crate::store::conn::StoreConn;

/// The record a commit writes for a pending reply: the key, its value (`D<reply>`), how long
/// it is kept, and the channel that wakes the key's waiters.
pub(crate) struct UnitCompletion {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) ttl_ms: u64,
    pub(crate) channel: String,
}

impl UnitCompletion {
    /// The record of `pending`'s reply `reply`, if a commit of `unit_tag`'s unit on `conn`
    /// can write it: the store is a [`RedisIdempotencyStore`] of the same
    /// [`RedisStores`](crate::store::RedisStores) (one connection, one server), on a Redis
    /// Cluster the key is in the unit's slot (rarely: idempotency keys are spread over the
    /// slots), and the reply is within the store's size limit. Otherwise `None`, and the
    /// behaviour records the reply itself, as it would without a unit of work.
    pub(crate) fn of(
        conn: &StoreConn,
        unit_tag: &str,
        pending: &PendingReply,
        reply: &[u8],
    ) -> Option<UnitCompletion> {
        let store = pending.store::<RedisIdempotencyStore>()?;
        if !store.conn.same_connection(conn) || reply.len() > store.max_write_bytes {
            return None;
        }
        let key = store.key_of(pending.key());
        if conn.is_cluster() && key_slot(key.as_bytes()) != key_slot(unit_tag.as_bytes()) {
            return None;
        }
        let mut value = Vec::with_capacity(1 + reply.len());
        value.push(b'D');
        value.extend_from_slice(reply);
        Some(UnitCompletion {
            key,
            value,
            ttl_ms: millis(pending.ttl()),
            channel: store.wakeups.channel().to_owned(),
        })
    }
}
