//! The dead-letter store: messages that could not be handled, kept with why, to be inspected
//! and replayed rather than lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::BoxError;

/// Where in its life a dead-lettered message failed: what replaying it means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    /// A handler failed for good (`handler` names it for an event). Replay dispatches the
    /// message here again.
    #[default]
    Handler,
    /// It arrived from a transport but could not be dispatched: bytes that are not an
    /// envelope or do not decode, a name this process does not know, an envelope claiming to
    /// be another message than its subject or stream carries, or one delivered more often
    /// than allowed without ever settling (it crashed or stalled its consumer).
    Delivery,
    /// An event queued by a handler (`ctx.publish`) could not be handed to the transport.
    /// Replay publishes it again.
    Publish,
    /// A saga's compensation failed after its retries.
    Compensation,
}

/// A message that failed for good, with everything needed to understand and replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// This record's id (UUID v7, so ids sort by time).
    pub id: Uuid,
    /// The message's wire name.
    pub message: String,
    /// For an event, the handler that failed.
    pub handler: Option<String>,
    /// The message as JSON; `None` for a `local` message, which cannot be replayed.
    pub payload: Option<Vec<u8>>,
    /// The failure's stable code ([`Error::code`](crate::Error::code)).
    pub code: String,
    /// The failure, as displayed.
    pub error: String,
    /// Attempts made (more than 1 when it was retried).
    pub attempts: u32,
    /// The failed dispatch's message id.
    pub message_id: Uuid,
    /// Its correlation id.
    pub correlation_id: Uuid,
    /// Its causation id, if it was caused by another message.
    pub causation_id: Option<Uuid>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// When it was dead-lettered.
    pub failed_at: SystemTime,
    /// Where in its life it failed.
    #[serde(default)]
    pub stage: FailureStage,
    /// For a message that came from a transport, where it was found on the broker (stream
    /// and sequence, subject, entry id).
    #[serde(default)]
    pub source: Option<String>,
    /// The transport's headers as received, when they could not be read (they may not be
    /// text); `payload` then holds the body as received.
    #[serde(default)]
    pub raw_headers: Option<Vec<u8>>,
}

/// Where dead letters are kept. Implementations must be safe to call concurrently.
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps `record`.
    fn put(&self, record: DeadLetterRecord) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// The oldest `limit` records, oldest first.
    fn list(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetterRecord>, BoxError>> + Send;

    /// Removes and returns the record `id`, if it is there.
    fn take(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<DeadLetterRecord>, BoxError>> + Send;

    /// How many records are kept.
    fn count(&self) -> impl Future<Output = Result<usize, BoxError>> + Send;
}

/// A [`DeadLetterStore`] behind a pointer, for where the store's type is not known (the
/// application's own store, [`Catga::dead_letters`](crate::Catga::dead_letters)).
/// Implemented for every `DeadLetterStore`.
pub trait DynDeadLetterStore: Send + Sync + 'static {
    /// [`DeadLetterStore::put`].
    fn put_dyn(&self, record: DeadLetterRecord) -> BoxFuture<'_, Result<(), BoxError>>;
    /// [`DeadLetterStore::list`].
    fn list_dyn(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetterRecord>, BoxError>>;
    /// [`DeadLetterStore::take`].
    fn take_dyn(&self, id: Uuid) -> BoxFuture<'_, Result<Option<DeadLetterRecord>, BoxError>>;
    /// [`DeadLetterStore::count`].
    fn count_dyn(&self) -> BoxFuture<'_, Result<usize, BoxError>>;
}

impl<S: DeadLetterStore> DynDeadLetterStore for S {
    fn put_dyn(&self, record: DeadLetterRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.put(record))
    }
    fn list_dyn(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetterRecord>, BoxError>> {
        Box::pin(self.list(limit))
    }
    fn take_dyn(&self, id: Uuid) -> BoxFuture<'_, Result<Option<DeadLetterRecord>, BoxError>> {
        Box::pin(self.take(id))
    }
    fn count_dyn(&self) -> BoxFuture<'_, Result<usize, BoxError>> {
        Box::pin(self.count())
    }
}

// Each method calls the store inside the `Arc` (`**self`): `self.put_dyn` would be the
// blanket `DynDeadLetterStore` impl of this very `Arc`, which calls back here, without end.
impl DeadLetterStore for Arc<dyn DynDeadLetterStore> {
    fn put(&self, record: DeadLetterRecord) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).put_dyn(record)
    }
    fn list(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetterRecord>, BoxError>> + Send {
        (**self).list_dyn(limit)
    }
    fn take(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<DeadLetterRecord>, BoxError>> + Send {
        (**self).take_dyn(id)
    }
    fn count(&self) -> impl Future<Output = Result<usize, BoxError>> + Send {
        (**self).count_dyn()
    }
}

/// An in-memory [`DeadLetterStore`], ordered by record id (time). Cloning it gives another
/// handle to the same records, so the application can keep one to inspect and replay.
///
/// Unbounded by default; [`MemoryDeadLetterStore::bounded`] keeps at most a number of
/// records and drops the oldest beyond it, with an error log naming what was dropped.
#[derive(Clone, Debug, Default)]
pub struct MemoryDeadLetterStore {
    records: Arc<Mutex<BTreeMap<Uuid, DeadLetterRecord>>>,
    capacity: Option<usize>,
}

impl MemoryDeadLetterStore {
    /// An empty, unbounded store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping at most `capacity` records (at least 1): the oldest go first.
    pub fn bounded(capacity: usize) -> Self {
        MemoryDeadLetterStore {
            records: Arc::default(),
            capacity: Some(capacity.max(1)),
        }
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<Uuid, DeadLetterRecord>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DeadLetterStore for MemoryDeadLetterStore {
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        let mut records = self.records();
        records.insert(record.id, record);
        while self.capacity.is_some_and(|cap| records.len() > cap) {
            if let Some((_, dropped)) = records.pop_first() {
                tracing::error!(target: "catga", message = %dropped.message, message_id = %dropped.message_id,
                    dead_letter = %dropped.id, capacity = records.len(),
                    "the in-memory dead-letter store is full; dropped its oldest record (give the application a durable store)");
            }
        }
        Ok(())
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        Ok(self.records().values().take(limit).cloned().collect())
    }

    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        Ok(self.records().remove(&id))
    }

    async fn count(&self) -> Result<usize, BoxError> {
        Ok(self.records().len())
    }
}
