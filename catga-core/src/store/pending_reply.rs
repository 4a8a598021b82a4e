//! A reply the [`Idempotency`](crate::behavior::Idempotency) behaviour is about to record,
//! offered to the unit of work of the dispatch it wraps.
//!
//! Without it, a handler whose effects commit in a unit of work (an outbox, an inbox) pays
//! one more round trip after the commit to record its idempotent reply, and a crash between
//! the two leaves the key claimed until its lease ends. A store whose records can be written
//! by that unit's commit says so ([`IdempotencyStore::completes_in_unit_of_work`]); the
//! behaviour then publishes a [`PendingReply`] for the length of the handler's pipeline, and
//! the unit of work that commits the handler's effects may write the reply with them and
//! mark it [recorded](PendingReply::recorded): the behaviour then sends nothing more.
//!
//! The reply is the handler's output encoded as the behaviour encodes it
//! ([`Payload::encode_output`](crate::payload::Payload::encode_output)), and the record is
//! the store's own format: only the store's adapter can write it, which is why the pending
//! reply hands out the store ([`store`](PendingReply::store)) for the adapter to recognise.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::idempotency::{IdempotencyStore, ReplyKey};

tokio::task_local! {
    /// The pending reply of the handler pipeline this task is running, if its `Idempotency`
    /// store can be completed by a unit of work.
    static PENDING: Arc<PendingReply>;
}

/// The idempotent reply of the dispatch being handled, which a unit of work may record with
/// its commit (see the [module docs](self)).
pub struct PendingReply {
    key: ReplyKey,
    ttl: Duration,
    message_id: Uuid,
    store: Arc<dyn Any + Send + Sync>,
    recorded: AtomicBool,
}

impl fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .field("message_id", &self.message_id)
            .field("recorded", &self.is_recorded())
            .finish_non_exhaustive()
    }
}

impl PendingReply {
    /// A reply for `key`, to keep for `ttl`, of the dispatch of `message_id`, in `store`.
    pub(crate) fn new<S: IdempotencyStore>(
        key: ReplyKey,
        ttl: Duration,
        message_id: Uuid,
        store: Arc<S>,
    ) -> Arc<PendingReply> {
        Arc::new(PendingReply {
            key,
            ttl,
            message_id,
            store,
            recorded: AtomicBool::new(false),
        })
    }

    /// Runs `work` with `pending` as the current pending reply.
    pub(crate) async fn scope<F: Future>(pending: Arc<PendingReply>, work: F) -> F::Output {
        PENDING.scope(pending, work).await
    }

    /// The pending reply of the dispatch `message_id` of `message` (and, for an event,
    /// `handler`) that this task is handling, if there is one. A unit of work checks all
    /// three so that a dispatch started inside a handler (another message, or the same one
    /// with another id) never records the outer dispatch's reply as its own.
    pub fn current(
        message: &str,
        handler: Option<&str>,
        message_id: Uuid,
    ) -> Option<Arc<PendingReply>> {
        PENDING
            .try_with(|pending| {
                (pending.key.message == message
                    && pending.key.handler == handler
                    && pending.message_id == message_id
                    && !pending.is_recorded())
                .then(|| Arc::clone(pending))
            })
            .ok()
            .flatten()
    }

    /// The key the reply is recorded under.
    pub fn key(&self) -> &ReplyKey {
        &self.key
    }

    /// How long the reply is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The idempotency store, if it is an `S`: an adapter records the reply only in a store
    /// it can write within its own commit.
    pub fn store<S: Any>(&self) -> Option<&S> {
        self.store.downcast_ref::<S>()
    }

    /// Marks the reply as recorded by a commit that has succeeded: the behaviour will not
    /// record it again. Call it only once the record is durable as far as the unit of work's
    /// effects are.
    pub fn recorded(&self) {
        self.recorded.store(true, Ordering::Release);
    }

    /// Whether a unit of work recorded the reply.
    pub fn is_recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }
}
