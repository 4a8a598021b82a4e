//! The dead-letter store: messages that could not be handled, kept with why, to be inspected
//! and replayed rather than lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::BoxError;

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

/// An in-memory [`DeadLetterStore`], ordered by record id (time). Cloning it gives another
/// handle to the same records, so the application can keep one to inspect and replay.
#[derive(Clone, Debug, Default)]
pub struct MemoryDeadLetterStore {
    records: Arc<Mutex<BTreeMap<Uuid, DeadLetterRecord>>>,
}

impl MemoryDeadLetterStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
        self.records().insert(record.id, record);
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
