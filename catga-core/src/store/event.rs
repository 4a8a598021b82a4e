//! Event store: the append-only log an event-sourced aggregate is kept in.
//!
//! A store holds *streams*, one per aggregate instance (e.g. `account-42`). Each stream is a
//! gap-free sequence of events numbered from 1; a stream's *version* is the number of events in
//! it, so an unknown stream is at version 0. Writers use optimistic concurrency:
//! [`EventStore::append`] names the version the writer last saw, and fails with
//! [`EventStoreError::Conflict`] when someone else appended in between. Nothing is locked while
//! a command runs, and no write is ever lost silently.
//!
//! The storage format holds no Rust types: an event is a type name, a payload as bytes (JSON
//! when written by a [`Repository`](crate::aggregate::Repository)), ids and a timestamp. That
//! keeps the trait implementable by a database table, e.g. in Postgres:
//!
//! ```text
//! stream text, version bigint, event_id uuid primary key, event_type text, payload bytea,
//! recorded_at timestamptz, correlation_id uuid, causation_id uuid,
//! unique (stream, version)   -- a unique violation on insert is a `Conflict`
//! ```
//!
//! A payload is kept as the bytes given (`bytea`, not `jsonb`: a payload need not be JSON, and
//! `jsonb` would reorder keys and drop whitespace; the conformance suite checks payloads byte
//! for byte).
//!
//! [`InMemoryEventStore`](super::memory_event::InMemoryEventStore) is the implementation for
//! tests and single-process applications.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use uuid::Uuid;

use crate::error::BoxError;

/// An event about to be appended: everything but its position, which the store assigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// A unique id for this event (a UUID v7, so ids sort by creation time).
    pub event_id: Uuid,
    /// The event's type name, for readers that do not decode payloads (projections, SQL).
    pub event_type: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// The conversation this event belongs to, if known.
    pub correlation_id: Option<Uuid>,
    /// The message that caused this event, if known.
    pub causation_id: Option<Uuid>,
}

impl NewEvent {
    /// An event with a fresh UUID v7 id and no correlation or causation id.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            payload: payload.into(),
            correlation_id: None,
            causation_id: None,
        }
    }

    /// Sets the correlation and causation ids.
    pub fn with_causation(
        mut self,
        correlation_id: Option<Uuid>,
        causation_id: Option<Uuid>,
    ) -> Self {
        self.correlation_id = correlation_id;
        self.causation_id = causation_id;
        self
    }
}

/// An event as the store keeps it: a [`NewEvent`] plus its stream, position and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The stream the event belongs to.
    pub stream: String,
    /// The event's position in its stream, from 1; the stream's version after this event.
    pub version: u64,
    /// The event's unique id.
    pub event_id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// When the store recorded the event.
    pub recorded_at: SystemTime,
    /// The conversation this event belongs to, if known.
    pub correlation_id: Option<Uuid>,
    /// The message that caused this event, if known.
    pub causation_id: Option<Uuid>,
}

/// Why an [`EventStore`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The stream is not at the version the writer expected: someone else appended first.
    /// Nothing was written. Reload the stream and decide again.
    #[error("stream `{stream}` is at version {actual}, not the expected version {expected}")]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// The version the writer expected.
        expected: u64,
        /// The stream's version when the append was refused.
        actual: u64,
    },
    /// The storage behind the store failed (connection lost, disk full, …).
    #[error("event store failed on stream `{stream}`: {source}")]
    Backend {
        /// The stream being read or written.
        stream: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl EventStoreError {
    /// Wraps a backend's error for `stream`.
    pub fn backend(stream: impl Into<String>, source: impl Into<BoxError>) -> Self {
        EventStoreError::Backend {
            stream: stream.into(),
            source: source.into(),
        }
    }

    /// Whether this is a [`Conflict`](EventStoreError::Conflict): reloading and deciding
    /// again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, EventStoreError::Conflict { .. })
    }
}

/// An append-only store of event streams with optimistic concurrency. See the
/// [module docs](self).
///
/// Implementations must be safe to call concurrently: of several appends to one stream with
/// the same `expected_version`, exactly one succeeds, and versions stay gap-free.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if the stream is at `expected_version` (0 for a stream
    /// that does not exist yet), numbering them `expected_version + 1 ..`, all or nothing.
    /// Returns the stream's new version, `expected_version + events.len()`.
    ///
    /// Fails with [`EventStoreError::Conflict`] if the stream is at another version. Appending
    /// no events writes nothing but still checks the version.
    fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send;

    /// The events of `stream` from version `from_version` on (inclusive), in order. Versions
    /// start at 1, so `0` and `1` both read the whole stream. An unknown stream, or one
    /// shorter than `from_version`, gives no events.
    fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, EventStoreError>> + Send;
}

/// A shared store is a store: several repositories can hold one `Arc<S>`.
impl<S: EventStore> EventStore for Arc<S> {
    fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + Send {
        (**self).append(stream, expected_version, events)
    }

    fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, EventStoreError>> + Send {
        (**self).load(stream, from_version)
    }
}
