//! The saga store: where a saga instance's progress is kept, so a saga resumes after a crash
//! and either completes or compensates.
//!
//! A saga's progress is a [`SagaState`]; a stored *instance* is that state with what a
//! recovering process needs to run it again without the process that started it: the saga's
//! name (which definition runs it), its status (so unfinished instances can be found without
//! decoding states) and its input data, encoded by the caller. [`SagaRecord::new`] builds one
//! from a state, so the copies of the id, name and status always agree with the state.
//!
//! Writers use optimistic concurrency, as the [event store](super::event) does. An instance's
//! *version* is the number of saves it has had, so an instance not stored is at version 0.
//! [`SagaStore::save`] names the version the writer last saw and fails with
//! [`SagaStoreError::Conflict`] when another writer saved in between: a process that resumed
//! an instance another process is still running learns it at its next save, stops, and leaves
//! the instance to the writer that won. The commands both sent carry the same message ids
//! (derived from the run and the step), so an [`Idempotency`](crate::behavior::Idempotency)
//! layer where they are handled runs each once.
//!
//! After a restart, a recovery loop asks [`SagaStore::unfinished`] for the instances of a saga
//! still `Running` or `Compensating` that nobody saved for a while, decodes each one's state
//! and data and runs it again. Finished instances stay until [`SagaStore::delete`]d (for
//! retention, or at once if nobody needs to look at them).
//!
//! The storage format holds no Rust types, so the trait is implementable by a database row,
//! e.g. in Postgres:
//!
//! ```text
//! id uuid primary key, saga text, status text, data bytea, state bytea,
//! version bigint, updated_at timestamptz
//! -- save at expected version 0: insert; a unique violation is a `Conflict`
//! -- save at expected version n: update … where id = $1 and version = n; no row is a `Conflict`
//! -- unfinished: where saga = $1 and status in ('Running', 'Compensating')
//! --             and updated_at < $2 order by updated_at, id limit $3
//! ```
//!
//! `data` and `state` are kept as the bytes given (`bytea`, not `jsonb`, which would reorder
//! keys and drop whitespace: the suite checks them byte for byte). `status` is
//! [`SagaStatus::as_str`].
//!
//! [`MemorySagaStore`] is the implementation for tests and single-process applications.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use uuid::Uuid;

use crate::error::BoxError;
use crate::saga::{SagaState, SagaStatus};

/// A saga instance as written: its state, and what a recovering process needs to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaRecord {
    /// The run's id ([`SagaState::id`]); the instance's key.
    pub id: Uuid,
    /// The saga definition's name ([`SagaState::saga`]).
    pub saga: String,
    /// Where the saga is ([`SagaState::status`]), kept apart from `state` so unfinished
    /// instances can be found without decoding states.
    pub status: SagaStatus,
    /// The data the saga runs over (the `data` of [`Saga::run`](crate::saga::Saga::run)),
    /// encoded by the caller; a recovering process decodes it to resume the saga. Opaque to
    /// the store.
    pub data: Vec<u8>,
    /// The [`SagaState`] as JSON (see [`SagaRecord::new`], [`SagaRecord::state`]).
    pub state: Vec<u8>,
}

impl SagaRecord {
    /// The record of `state` with the saga's encoded `data`: the state as JSON, and its id,
    /// saga name and status copied out of it.
    ///
    /// # Errors
    /// The state could not be encoded as JSON (it always can: it holds strings, numbers and
    /// ids only; the error is serde's).
    pub fn new(state: &SagaState, data: Vec<u8>) -> Result<Self, serde_json::Error> {
        Ok(SagaRecord {
            id: state.id,
            saga: state.saga.clone(),
            status: state.status,
            data,
            state: serde_json::to_vec(state)?,
        })
    }

    /// The [`SagaState`] this record keeps, decoded from its JSON.
    ///
    /// # Errors
    /// `state` is not the JSON of a [`SagaState`].
    pub fn decode_state(&self) -> Result<SagaState, serde_json::Error> {
        serde_json::from_slice(&self.state)
    }
}

/// A saga instance as the store keeps it: the last [`SagaRecord`] saved, its version and when
/// it was saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSaga {
    /// The record of the last save.
    pub record: SagaRecord,
    /// How many times the instance was saved, from 1; pass it as the expected version of the
    /// next save.
    pub version: u64,
    /// When the store recorded the last save, by the store's clock (a database's own, for a
    /// shared store).
    pub updated_at: SystemTime,
}

/// Why a [`SagaStore`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaStoreError {
    /// The instance is not at the version the writer expected: another writer saved it first.
    /// Nothing was written. The writer no longer owns the instance: reload it before deciding
    /// anything, or leave it to the writer that won.
    #[error("saga instance `{id}` is at version {actual}, not the expected version {expected}")]
    Conflict {
        /// The instance saved.
        id: Uuid,
        /// The version the writer expected.
        expected: u64,
        /// The instance's version when the save was refused (0: it is not stored).
        actual: u64,
    },
    /// The storage behind the store failed (connection lost, disk full, …).
    #[error("the saga store failed: {source}")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl SagaStoreError {
    /// Wraps a backend's error.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        SagaStoreError::Backend {
            source: source.into(),
        }
    }

    /// Whether this is a [`Conflict`](SagaStoreError::Conflict): another writer owns the
    /// instance now.
    pub fn is_conflict(&self) -> bool {
        matches!(self, SagaStoreError::Conflict { .. })
    }
}

/// Where saga instances are kept, with optimistic concurrency. See the [module docs](self).
///
/// Implementations must be safe to call concurrently, from many processes for a shared store:
/// of several saves of one instance with the same expected version, exactly one succeeds.
pub trait SagaStore: Send + Sync + 'static {
    /// Saves `record` (keyed by `record.id`) if the instance is at `expected_version` (0 for
    /// an instance not stored yet), replacing what was saved before, and returns its new
    /// version, `expected_version + 1`.
    ///
    /// Fails with [`SagaStoreError::Conflict`] if the instance is at another version; nothing
    /// is written then.
    fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<u64, SagaStoreError>> + Send;

    /// The instance `id` as last saved, or `None` if it is not stored.
    fn load(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredSaga>, SagaStoreError>> + Send;

    /// At most `limit` instances of the saga named `saga` that are not finished (status
    /// [`Running`](SagaStatus::Running) or [`Compensating`](SagaStatus::Compensating)), last
    /// saved strictly before `updated_before` when it is given (by the store's clock, as
    /// [`StoredSaga::updated_at`]), the longest untouched first (ties in any order): what a
    /// recovery loop resumes.
    fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredSaga>, SagaStoreError>> + Send;

    /// Removes the instance `id`, whatever its status and version, and returns whether it was
    /// stored. Meant for finished instances (retention): a runner still running a deleted
    /// instance gets a [`Conflict`](SagaStoreError::Conflict) with `actual: 0` at its next
    /// save, and a deleted id is new again (a save at version 0 stores it).
    fn delete(&self, id: Uuid) -> impl Future<Output = Result<bool, SagaStoreError>> + Send;
}

/// A shared store is a store: a runner and a recovery loop can hold one `Arc<S>`.
impl<S: SagaStore> SagaStore for Arc<S> {
    fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<u64, SagaStoreError>> + Send {
        (**self).save(record, expected_version)
    }

    fn load(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredSaga>, SagaStoreError>> + Send {
        (**self).load(id)
    }

    fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredSaga>, SagaStoreError>> + Send {
        (**self).unfinished(saga, updated_before, limit)
    }

    fn delete(&self, id: Uuid) -> impl Future<Output = Result<bool, SagaStoreError>> + Send {
        (**self).delete(id)
    }
}

/// A [`SagaStore`] in memory, for tests and single-process applications; nothing survives the
/// process, so it cannot resume a saga after a crash. Cloning it gives another handle to the
/// same instances.
///
/// One lock over a map, held only to compare a version and replace a record, or to copy
/// records out; never across an `.await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::saga::SagaState;
/// use catga_core::store::saga::{MemorySagaStore, SagaRecord, SagaStore, SagaStoreError};
///
/// let store = MemorySagaStore::new();
/// let state = SagaState::new("checkout");
/// let record = SagaRecord::new(&state, br#"{"cents":500}"#.to_vec())?;
/// assert_eq!(store.save(&record, 0).await?, 1);
///
/// // A writer that still believes the instance is new is refused.
/// let stale = store.save(&record, 0).await;
/// assert!(matches!(stale, Err(SagaStoreError::Conflict { expected: 0, actual: 1, .. })));
///
/// let unfinished = store.unfinished("checkout", None, 10).await?;
/// assert_eq!(unfinished[0].record.decode_state()?, state);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemorySagaStore {
    instances: Arc<Mutex<HashMap<Uuid, StoredSaga>>>,
}

impl MemorySagaStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many instances are stored, finished or not.
    pub fn len(&self) -> usize {
        self.instances().len()
    }

    /// Whether no instance is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn instances(&self) -> MutexGuard<'_, HashMap<Uuid, StoredSaga>> {
        // Every change under the lock is one insert or remove: a panic cannot leave the map
        // half-written, so a poisoned lock is still usable.
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl SagaStore for MemorySagaStore {
    async fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> Result<u64, SagaStoreError> {
        // Copy the record before taking the lock; only the version check and the swap are
        // done under it.
        let record = record.clone();
        let mut instances = self.instances();
        let actual = instances.get(&record.id).map_or(0, |stored| stored.version);
        if actual != expected_version {
            return Err(SagaStoreError::Conflict {
                id: record.id,
                expected: expected_version,
                actual,
            });
        }
        let version = actual + 1;
        instances.insert(
            record.id,
            StoredSaga {
                record,
                version,
                updated_at: SystemTime::now(),
            },
        );
        Ok(version)
    }

    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        Ok(self.instances().get(&id).cloned())
    }

    async fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        let mut found: Vec<StoredSaga> = self
            .instances()
            .values()
            .filter(|stored| {
                stored.record.saga == saga
                    && !stored.record.status.is_finished()
                    && updated_before.is_none_or(|before| stored.updated_at < before)
            })
            .cloned()
            .collect();
        // The id breaks ties so the order is stable from one call to the next.
        found.sort_by_key(|stored| (stored.updated_at, stored.record.id));
        found.truncate(limit);
        Ok(found)
    }

    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        Ok(self.instances().remove(&id).is_some())
    }
}
