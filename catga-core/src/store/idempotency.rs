//! The idempotency store: which messages were handled, and their replies.
//!
//! A dispatch *claims* its key for a lease, then *completes* it with the reply (kept for a
//! TTL) or *releases* it when the handler failed, so a retry can run. A second dispatch with
//! the same key gets the stored reply, or, while the first is still running, *waits* for it.
//! The lease bounds how long a crashed process can hold a key; a dispatch that ends in any
//! other way (an error, a deadline, a cancellation, a dropped future, a panic) gives its claim
//! back at once (see [`IdempotencyStore::release_now`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

pub use super::pending_reply::PendingReply;
use crate::error::BoxError;

/// What identifies one handling of one message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplyKey {
    /// The message's wire name.
    pub message: &'static str,
    /// For an event, the handler (each handler of an event is deduplicated on its own).
    pub handler: Option<&'static str>,
    /// The message id, or the key the message declares.
    pub id: KeyId,
}

/// The identifying part of a [`ReplyKey`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyId {
    /// The dispatch's message id (the default).
    MessageId(Uuid),
    /// A key the message declares with [`IdempotencyKey`](crate::behavior::IdempotencyKey).
    Declared(String),
}

impl fmt::Display for ReplyKey {
    /// `orders.place:0190…` or `orders.placed@shop::mail:0190…`: the form stores use as a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)?;
        if let Some(handler) = self.handler {
            write!(f, "@{handler}")?;
        }
        match &self.id {
            KeyId::MessageId(id) => write!(f, ":{id}"),
            KeyId::Declared(key) => write!(f, ":{key}"),
        }
    }
}

/// The outcome of [`IdempotencyStore::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: handle the message, then complete or release it.
    Claimed,
    /// The message was handled already; this is its reply (JSON).
    Completed(Arc<[u8]>),
    /// Another dispatch holds the key and has not finished.
    InProgress,
}

/// Where handled keys and their replies are kept. Implementations must be safe to call
/// concurrently, from many processes for a shared store.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for `lease`, or reports that it is done or held.
    fn claim(
        &self,
        key: &ReplyKey,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, BoxError>> + Send;

    /// Records the reply for a key this dispatch claimed; kept for `ttl`.
    fn complete(
        &self,
        key: &ReplyKey,
        reply: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Gives up a claim (the handler failed), so another attempt can claim it.
    fn release(&self, key: &ReplyKey) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Gives up a claim at once, without awaiting, if this store can (an in-memory one can;
    /// one behind a network cannot); returns whether it did.
    ///
    /// Called when a dispatch that holds a claim is dropped before it finished (a deadline,
    /// a cancellation, the caller dropping its future, a panic): a destructor cannot await.
    /// When this returns `false`, the claim is released by [`release`](Self::release) on a
    /// task spawned on the current Tokio runtime. The default returns `false`.
    fn release_now(&self, key: &ReplyKey) -> bool {
        let _ = key;
        false
    }

    /// Waits until a key held by another dispatch is completed or released, for at most
    /// `timeout`. Returning early is allowed (the caller claims again).
    fn wait(
        &self,
        key: &ReplyKey,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Whether a unit of work inside the [`Idempotency`](crate::behavior::Idempotency)
    /// behaviour may record this store's replies in its own commit ([`PendingReply`]): the
    /// behaviour then offers each reply to it before recording it itself. Only an adapter
    /// whose unit of work can write this store's records returns `true` (the Redis store,
    /// whose records the Redis outbox's and inbox's commit script writes). The default is
    /// `false`, which costs the behaviour nothing.
    fn completes_in_unit_of_work(&self) -> bool {
        false
    }
}

const SHARDS: usize = 16;
/// Expired entries of a shard are swept every this many claims on it.
const SWEEP_EVERY: u32 = 256;

/// An in-memory [`IdempotencyStore`]: sharded maps with short locks, never held across an
/// await. Expired entries are swept as the shard is used. For one process; use the Redis or
/// Postgres store to deduplicate across processes.
#[derive(Debug)]
pub struct MemoryIdempotencyStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

/// A [`ReplyKey`] as this store keys it: message and handler names by address (each is one
/// `'static` string of its message's `MessageInfo`, so this is exact and hashes in a few
/// instructions), the id by value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MemKey {
    message: usize,
    handler: usize,
    id: KeyId,
}

impl MemKey {
    fn of(key: &ReplyKey) -> Self {
        MemKey {
            message: key.message.as_ptr() as usize,
            handler: key.handler.map_or(0, |h| h.as_ptr() as usize),
            id: key.id.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<MemKey, Entry, RandomState>,
    claims: u32,
}

#[derive(Debug)]
enum Entry {
    Pending { until: Instant, done: Arc<Notify> },
    Done { until: Instant, reply: Arc<[u8]> },
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        MemoryIdempotencyStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::default(),
        }
    }
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, key: &MemKey) -> MutexGuard<'_, Shard> {
        // A UUID v7 ends in random bits: its last byte spreads keys without hashing them
        // twice (the shard's map hashes the key anyway). A declared key is hashed.
        let spread = match &key.id {
            KeyId::MessageId(id) => u64::from(id.as_bytes()[15]),
            KeyId::Declared(text) => self.hasher.hash_one(text),
        };
        let index = usize::try_from(spread % SHARDS as u64).unwrap_or(0);
        // A panic while holding a shard cannot leave the map inconsistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes `key`'s claim if it is pending (never a recorded reply) and wakes its waiters.
    /// Never awaits: `release` and `release_now` are both this.
    fn release_pending(&self, key: &ReplyKey) {
        let key = &MemKey::of(key);
        let mut shard = self.shard(key);
        if matches!(shard.entries.get(key), Some(Entry::Pending { .. }))
            && let Some(Entry::Pending { done, .. }) = shard.entries.remove(key)
        {
            done.notify_waiters();
        }
    }

    /// How many keys are stored (pending or done, not yet swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        let key = &MemKey::of(key);
        let now = Instant::now();
        let mut shard = self.shard(key);
        shard.claims = shard.claims.wrapping_add(1);
        if shard.claims.is_multiple_of(SWEEP_EVERY) {
            shard.entries.retain(|_, e| match e {
                Entry::Pending { until, .. } | Entry::Done { until, .. } => *until > now,
            });
        }
        let claim = match shard.entries.get(key) {
            Some(Entry::Done { until, reply }) if *until > now => Claim::Completed(reply.clone()),
            Some(Entry::Pending { until, .. }) if *until > now => Claim::InProgress,
            // Absent, or expired (a finished TTL, or a lease whose holder died).
            _ => Claim::Claimed,
        };
        if claim == Claim::Claimed {
            shard.entries.insert(
                key.clone(),
                Entry::Pending {
                    until: now + lease,
                    done: Arc::new(Notify::new()),
                },
            );
        }
        Ok(claim)
    }

    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        let key = &MemKey::of(key);
        let done = Entry::Done {
            until: Instant::now() + ttl,
            reply: Arc::from(reply),
        };
        if let Some(Entry::Pending { done: waiters, .. }) =
            self.shard(key).entries.insert(key.clone(), done)
        {
            waiters.notify_waiters();
        }
        Ok(())
    }

    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        self.release_pending(key);
        Ok(())
    }

    fn release_now(&self, key: &ReplyKey) -> bool {
        self.release_pending(key);
        true
    }

    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        let key = &MemKey::of(key);
        let done;
        let until;
        let notified = {
            let shard = self.shard(key);
            match shard.entries.get(key) {
                Some(Entry::Pending { done: d, until: u }) => {
                    done = d.clone();
                    until = *u;
                }
                _ => return Ok(()),
            }
            // Created while the shard is locked: a `complete` or `release` after this point
            // wakes it (a `Notified` hears every `notify_waiters` from its creation on).
            done.notified()
        };
        // Wake up when the holder finishes, when its lease runs out, or at the timeout.
        let limit = until.min(Instant::now() + timeout);
        let _ = tokio::time::timeout_at(limit, notified).await;
        Ok(())
    }
}
