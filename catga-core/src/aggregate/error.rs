//! Why loading, saving or executing on an aggregate failed.

use crate::codec::CodecError;
use crate::store::event::EventStoreError;

/// Why [`Repository::load`](super::Repository::load) or
/// [`Repository::save`](super::Repository::save) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The event store failed; a [`Conflict`](EventStoreError::Conflict) means another writer
    /// saved first (see [`RepositoryError::is_conflict`]).
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// A stored event's payload is not a valid event of this aggregate: the stream was written
    /// by another version of the code, or damaged. Nothing was applied past it.
    #[error("cannot decode event {version} of stream `{stream}` (type `{event_type}`): {source}")]
    Decode {
        /// The stream read.
        stream: String,
        /// The event's version in the stream.
        version: u64,
        /// The type name stored with the event.
        event_type: String,
        /// The codec's error, with its position in the payload.
        #[source]
        source: CodecError,
    },
    /// An event could not be encoded (e.g. a map with non-string keys). Nothing was saved.
    #[error("cannot encode an event for stream `{stream}`: {source}")]
    Encode {
        /// The stream being written.
        stream: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The store returned events out of order or with a gap: the store is broken, since
    /// replaying them would build a wrong state.
    #[error("stream `{stream}` returned version {found} where version {expected} was due")]
    OutOfOrder {
        /// The stream read.
        stream: String,
        /// The version that should have come next.
        expected: u64,
        /// The version that came.
        found: u64,
    },
}

impl RepositoryError {
    /// Whether another writer saved first: reloading and deciding again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, RepositoryError::Store(e) if e.is_conflict())
    }
}

/// Why [`Repository::execute`](super::Repository::execute) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError<E> {
    /// The command refused: the aggregate's own error. Nothing was saved.
    #[error(transparent)]
    Rejected(E),
    /// Every attempt lost the race to another writer of the same stream.
    #[error("gave up on stream `{stream}` after {attempts} attempts, each in conflict: {source}")]
    Contention {
        /// The contended stream.
        stream: String,
        /// How many times the command ran.
        attempts: u32,
        /// The last conflict.
        #[source]
        source: EventStoreError,
    },
    /// Loading or saving failed for another reason than a conflict.
    #[error(transparent)]
    Repository(RepositoryError),
}
