//! An [`EventStore`] in memory, for tests and single-process applications.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::SystemTime;

use super::event::{EventStore, EventStoreError, NewEvent, StoredEvent};

/// One stream's events; index `i` holds version `i + 1`. Events are shared so a reader copies
/// pointers, not payloads, while it holds the lock.
type Stream = Vec<Arc<StoredEvent>>;

/// An [`EventStore`] that keeps every stream in memory; nothing survives the process.
///
/// Each stream has its own lock, held only to compare a version and push events, or to copy
/// a stream's event pointers; no lock is held across an `.await`, and streams do not contend
/// with each other. Share one store between repositories with an `Arc`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), catga_core::store::event::EventStoreError> {
/// use catga_core::store::event::{EventStore, EventStoreError, NewEvent};
/// use catga_core::store::memory_event::InMemoryEventStore;
///
/// let store = InMemoryEventStore::new();
/// let version = store.append("order-1", 0, vec![NewEvent::new("Placed", br#"{}"#.to_vec())]).await?;
/// assert_eq!(version, 1);
///
/// // A writer that still believes the stream is empty is refused.
/// let stale = store.append("order-1", 0, vec![NewEvent::new("Placed", br#"{}"#.to_vec())]).await;
/// assert!(matches!(stale, Err(EventStoreError::Conflict { expected: 0, actual: 1, .. })));
/// assert_eq!(store.load("order-1", 1).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct InMemoryEventStore {
    streams: RwLock<HashMap<String, Arc<Mutex<Stream>>>>,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current version of `stream`: its number of events, 0 if it does not exist.
    pub fn version(&self, stream: &str) -> u64 {
        self.existing(stream)
            .map_or(0, |events| lock(&events).len() as u64)
    }

    /// The stream's events, if anything was ever appended to it.
    fn existing(&self, stream: &str) -> Option<Arc<Mutex<Stream>>> {
        self.streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .cloned()
    }

    /// The stream's events, creating the stream if needed.
    fn existing_or_new(&self, stream: &str) -> Arc<Mutex<Stream>> {
        self.streams
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stream.to_owned())
            .or_default()
            .clone()
    }

    fn append_now(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        if events.is_empty() {
            let actual = self.version(stream);
            return if actual == expected_version {
                Ok(actual)
            } else {
                Err(conflict(stream, expected_version, actual))
            };
        }
        // Build the records before taking the lock; only the version and time are set under it.
        let records: Vec<StoredEvent> = events
            .into_iter()
            .map(|event| StoredEvent {
                stream: stream.to_owned(),
                version: 0,
                event_id: event.event_id,
                event_type: event.event_type,
                payload: event.payload,
                recorded_at: SystemTime::UNIX_EPOCH,
                correlation_id: event.correlation_id,
                causation_id: event.causation_id,
            })
            .collect();
        // Only an append that expects an empty stream may create it.
        let slot = match self.existing(stream) {
            Some(slot) => slot,
            None if expected_version == 0 => self.existing_or_new(stream),
            None => return Err(conflict(stream, expected_version, 0)),
        };
        let mut stored = lock(&slot);
        let actual = stored.len() as u64;
        if actual != expected_version {
            return Err(conflict(stream, expected_version, actual));
        }
        let recorded_at = SystemTime::now();
        stored.reserve(records.len());
        for (version, mut record) in (actual + 1..).zip(records) {
            record.version = version;
            record.recorded_at = recorded_at;
            stored.push(Arc::new(record));
        }
        Ok(stored.len() as u64)
    }

    fn load_now(&self, stream: &str, from_version: u64) -> Vec<StoredEvent> {
        let Some(slot) = self.existing(stream) else {
            return Vec::new();
        };
        let shared: Vec<Arc<StoredEvent>> = {
            let stored = lock(&slot);
            let start = usize::try_from(from_version.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(stored.len());
            stored[start..].to_vec()
        };
        shared
            .iter()
            .map(|event| StoredEvent::clone(event))
            .collect()
    }
}

impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        self.append_now(stream, expected_version, events)
    }

    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        Ok(self.load_now(stream, from_version))
    }
}

impl fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streams = self
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("InMemoryEventStore")
            .field("streams", &streams)
            .finish()
    }
}

/// Locks a stream. A panic while the lock was held cannot leave a stream half-written (a
/// stream only ever grows by whole, checked appends), so a poisoned lock is still usable.
fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(PoisonError::into_inner)
}

fn conflict(stream: &str, expected: u64, actual: u64) -> EventStoreError {
    EventStoreError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}
