//! Running a saga with its progress kept in a [`SagaStore`], so that another process can
//! finish it after a crash (see [`recover`](super::Saga::recover)).
//!
//! The run saves the instance before its first command and after every change: a forward step
//! that completed or failed, each compensation, the final status. A command is sent only
//! after the change before it was saved, so the store is never more than one command behind
//! what was sent, and a process that resumes the instance sends at most that one command
//! again, with the message id it had the first time.
//!
//! Saves are optimistic ([`SagaStore::save`] names the version it expects). A save refused as
//! a [`Conflict`](SagaStoreError::Conflict) means another process saved the instance since
//! (it resumed it): this run stops at once, sends nothing more, and returns
//! [`StoredSagaError::Superseded`]. Any other failed save also stops the run
//! ([`StoredSagaError::Store`]): going on unsaved would leave the store behind the commands,
//! and a recovering process resumes from the last save anyway.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::Saga;
use super::progress::SagaState;
use super::run::SagaError;
use crate::mediator::Catga;
use crate::pipeline::Layer;
use crate::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};

/// Why a run persisted in a [`SagaStore`] stopped without completing. Made by
/// [`Saga::run_stored`], [`Saga::resume_stored`] and [`Saga::recover`].
///
/// ```
/// use catga_core::saga::StoredSagaError;
///
/// fn retry_later(error: &StoredSagaError) -> bool {
///     eprintln!("checkout {} stopped: {error}", error.id());
///     match error {
///         // Another process runs the instance now: nothing to do here.
///         StoredSagaError::Superseded { .. } => false,
///         // The saga ran to its end and was compensated: final.
///         StoredSagaError::Saga { .. } => false,
///         // The store failed: the instance waits in it for a recovery loop.
///         _ => true,
///     }
/// }
/// # let _ = retry_later;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredSagaError {
    /// The saga ended without completing (it was compensated, or some compensations failed
    /// and were dead-lettered), or the stored state cannot be run by this saga definition
    /// (nothing was sent then). The store holds the final state.
    #[error("saga instance `{id}`: {source}")]
    Saga {
        /// The instance.
        id: Uuid,
        /// What [`Saga::run`] reports for the same state.
        #[source]
        source: SagaError,
    },
    /// Another process saved the instance since this one last did (it resumed it): this run
    /// stopped and sent nothing more. The other process finishes the instance.
    #[error(
        "saga `{saga}` instance `{id}` was saved by another process first; this process stopped sending its commands and left it to that process: {source}"
    )]
    Superseded {
        /// The saga.
        saga: &'static str,
        /// The instance.
        id: Uuid,
        /// The store's [`Conflict`](SagaStoreError::Conflict).
        #[source]
        source: SagaStoreError,
    },
    /// Saving the instance's progress failed: the run stopped before sending anything more.
    /// The store still holds the last state saved, which a recovery loop resumes once the
    /// grace period has passed.
    #[error(
        "saga `{saga}` instance `{id}`: saving its progress failed, so it stopped; it resumes from its last saved state: {source}"
    )]
    Store {
        /// The saga.
        saga: &'static str,
        /// The instance.
        id: Uuid,
        /// The store's error.
        #[source]
        source: SagaStoreError,
    },
    /// The saga's data could not be encoded as JSON (nothing was stored or sent), or the
    /// stored data could not be decoded as the saga's data type (nothing was sent).
    #[error(
        "saga `{saga}` instance `{id}`: its data is not the JSON of the saga's data type: {source}"
    )]
    Data {
        /// The saga.
        saga: &'static str,
        /// The instance.
        id: Uuid,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored state is not the JSON of a [`SagaState`] (nothing was sent), or a state
    /// could not be encoded (it always can: strings, numbers and ids).
    #[error("saga `{saga}` instance `{id}`: its stored state does not decode: {source}")]
    State {
        /// The saga.
        saga: &'static str,
        /// The instance.
        id: Uuid,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoredSagaError {
    /// The instance the error is about.
    pub fn id(&self) -> Uuid {
        match self {
            StoredSagaError::Saga { id, .. }
            | StoredSagaError::Superseded { id, .. }
            | StoredSagaError::Store { id, .. }
            | StoredSagaError::Data { id, .. }
            | StoredSagaError::State { id, .. } => *id,
        }
    }

    /// Whether another process owns the instance now
    /// ([`Superseded`](StoredSagaError::Superseded)).
    pub fn is_superseded(&self) -> bool {
        matches!(self, StoredSagaError::Superseded { .. })
    }
}

/// The instance as this process last saved it, and the version that save returned.
struct Saved<'s, S> {
    store: &'s S,
    saga: &'static str,
    record: SagaRecord,
    version: u64,
}

impl<S: SagaStore> Saved<'_, S> {
    /// Saves `state` over the last save; a conflict means another process owns the
    /// instance now.
    async fn save(&mut self, state: &SagaState) -> Result<(), StoredSagaError> {
        let (saga, id) = (self.saga, self.record.id);
        self.record.status = state.status;
        self.record.state = serde_json::to_vec(state).map_err(|source| StoredSagaError::State {
            saga,
            id,
            source,
        })?;
        match self.store.save(&self.record, self.version).await {
            Ok(version) => {
                self.version = version;
                Ok(())
            }
            Err(source) if source.is_conflict() => {
                tracing::warn!(target: "catga", saga, %id, expected = self.version, error = %source,
                    "saga instance saved by another process; stopping");
                Err(StoredSagaError::Superseded { saga, id, source })
            }
            Err(source) => {
                tracing::error!(target: "catga", saga, %id, version = self.version, error = %source,
                    "saving a saga's progress failed; stopping, it resumes from its last save");
                Err(StoredSagaError::Store { saga, id, source })
            }
        }
    }
}

impl<D: Sync + 'static> Saga<D> {
    /// [`run`](Self::run), with the instance kept in `store`: saved as a new instance
    /// (version 0) before the first command, then after every change, so that
    /// [`recover`](Self::recover) in any process finishes it if this one dies.
    ///
    /// `state` is a fresh state ([`start`](Self::start)); its id is the instance's, known
    /// before the run begins. `data` is stored as JSON next to the state, which is why it
    /// must be [`Serialize`]; [`recover`](Self::recover) needs it
    /// [`DeserializeOwned`] too, and decodes it into a value that must run the saga's
    /// steps as the original did. Keep in it what the steps' commands are built from, not
    /// handles (connections, clients): the steps' handlers hold those.
    ///
    /// Each command carries the message id derived from the run, the step and the direction
    /// (see the [module docs](super)), so the one command a resumed run may send again is
    /// recognised by an [`Idempotency`](crate::behavior::Idempotency) layer (or an inbox)
    /// where it is handled, if that layer's store is shared by the processes handling it.
    ///
    /// ```rust,standalone_crate
    /// use catga_core::prelude::*;
    /// use catga_core::saga::{Saga, SagaStatus};
    /// use catga_core::store::saga::{MemorySagaStore, SagaStore};
    ///
    /// #[command(output = u64)]
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// pub struct Reserve { pub qty: u32 }
    /// #[command]
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// pub struct Release { pub reservation: u64 }
    /// #[command]
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// pub struct Charge { pub cents: u64 }
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("out of stock")]
    /// pub struct OutOfStock;
    ///
    /// #[handler] async fn reserve(_: Reserve) -> Result<u64, OutOfStock> { Ok(42) }
    /// #[handler] async fn release(_: Release) -> Result<(), OutOfStock> { Ok(()) }
    /// #[handler] async fn charge(_: Charge) -> Result<(), OutOfStock> { Ok(()) }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Checkout { qty: u32, cents: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let checkout = Saga::builder("checkout")
    ///     .step("reserve", |c: &Checkout| Reserve { qty: c.qty }, |_, id| Release { reservation: id })
    ///     .last_step("charge", |c: &Checkout| Charge { cents: c.cents })
    ///     .build()?;
    /// let app = Catga::builder().layer(Idempotency::default()).build()?;
    /// let store = MemorySagaStore::new(); // a `PostgresSagaStore` to survive a crash
    ///
    /// let mut state = checkout.start();
    /// checkout.run_stored(&app, &store, &Checkout { qty: 1, cents: 500 }, &mut state).await?;
    ///
    /// let stored = store.load(state.id).await?.ok_or("not stored")?;
    /// assert_eq!(stored.record.status, SagaStatus::Completed);
    /// // Saved at the start, after each of the two steps, and once completed.
    /// assert_eq!(stored.version, 4);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoredSagaError::Saga`] with what [`run`](Self::run) returns for a saga that did
    /// not complete (the final state is stored); [`StoredSagaError::Superseded`] when the
    /// instance is already stored (nothing is sent) or another process saved it during the
    /// run (the run stopped); [`StoredSagaError::Store`] when a save failed (the run
    /// stopped); [`StoredSagaError::Data`] when `data` does not encode (nothing is stored).
    pub async fn run_stored<L: Layer, S: SagaStore>(
        &self,
        app: &Catga<L>,
        store: &S,
        data: &D,
        state: &mut SagaState,
    ) -> Result<(), StoredSagaError>
    where
        D: Serialize,
    {
        let (saga, id) = (self.name, state.id);
        self.check(state)
            .map_err(|source| StoredSagaError::Saga { id, source })?;
        let encoded = serde_json::to_vec(data).map_err(|source| StoredSagaError::Data {
            saga,
            id,
            source,
        })?;
        let record = SagaRecord::new(state, encoded).map_err(|source| StoredSagaError::State {
            saga,
            id,
            source,
        })?;
        let mut saved = Saved {
            store,
            saga,
            record,
            version: 0,
        };
        // The first save creates the instance: a conflict here means it exists already, and
        // nothing is sent.
        saved.save(state).await?;
        self.drive(app, data, state, &mut saved).await
    }

    /// Resumes one stored instance where its last save left it: claims it (saves it again at
    /// the version it was read at, so of several processes resuming it exactly one goes on),
    /// then continues as [`run_stored`](Self::run_stored) would have: a `Running` instance
    /// with its next step (the steps recorded as completed are not sent again), a
    /// `Compensating` one with its last completed step's compensation. The step in flight
    /// when the last process died is sent again with its first message id.
    ///
    /// `instance` is what [`SagaStore::unfinished`] or [`SagaStore::load`] returned. A
    /// finished instance is reported as it is, without a save. Nothing is sent or saved for
    /// an instance whose state or data does not decode, or that this saga definition cannot
    /// run (another saga's, or one recording a step this definition no longer has).
    /// [`recover`](Self::recover) calls this for each instance it finds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use catga_core::prelude::*;
    /// use catga_core::saga::{Saga, SagaStatus};
    /// use catga_core::store::saga::{MemorySagaStore, SagaRecord, SagaStore};
    ///
    /// // A saga without steps keeps the example short; see `run_stored` for steps.
    /// let noop = Saga::<u32>::builder("noop").build()?;
    /// let app = Catga::builder().build()?;
    /// let store = MemorySagaStore::new();
    /// // What a process that died right after starting the saga left behind.
    /// let state = noop.start();
    /// store.save(&SagaRecord::new(&state, b"7".to_vec())?, 0).await?;
    ///
    /// let instance = store.load(state.id).await?.ok_or("not stored")?;
    /// let resumed = noop.resume_stored(&app, &store, instance).await;
    /// assert!(resumed.outcome.is_ok());
    /// assert_eq!(resumed.status(), Some(SagaStatus::Completed));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resume_stored<L: Layer, S: SagaStore>(
        &self,
        app: &Catga<L>,
        store: &S,
        instance: StoredSaga,
    ) -> Resumed
    where
        D: DeserializeOwned,
    {
        let id = instance.record.id;
        match instance.record.decode_state() {
            Err(source) => Resumed {
                id,
                state: None,
                outcome: Err(StoredSagaError::State {
                    saga: self.name,
                    id,
                    source,
                }),
            },
            Ok(mut state) => {
                let outcome = self.resume_state(app, store, instance, &mut state).await;
                Resumed {
                    id,
                    state: Some(state),
                    outcome,
                }
            }
        }
    }

    async fn resume_state<L: Layer, S: SagaStore>(
        &self,
        app: &Catga<L>,
        store: &S,
        instance: StoredSaga,
        state: &mut SagaState,
    ) -> Result<(), StoredSagaError>
    where
        D: DeserializeOwned,
    {
        let (saga, id) = (self.name, instance.record.id);
        self.check(state)
            .map_err(|source| StoredSagaError::Saga { id, source })?;
        if state.status.is_finished() {
            return self
                .outcome(state, None)
                .map_err(|source| StoredSagaError::Saga { id, source });
        }
        let data: D = serde_json::from_slice(&instance.record.data)
            .map_err(|source| StoredSagaError::Data { saga, id, source })?;
        tracing::info!(target: "catga", saga, %id, status = state.status.as_str(),
            next_step = state.next_step, version = instance.version, "resuming a stored saga");
        // The stored bytes of the data are saved again as they are: re-encoding could change
        // them, and they are not ours to normalise.
        let mut saved = Saved {
            store,
            saga,
            record: instance.record,
            version: instance.version,
        };
        // The claim: a save that changes nothing but the version. Another process resuming
        // the same instance from the same read gets the conflict before sending anything; the
        // process that last ran it (if it is alive after all) gets one at its next save.
        saved.save(state).await?;
        self.drive(app, &data, state, &mut saved).await
    }

    /// Makes the saga's changes one at a time, saving each before the next command.
    async fn drive<L: Layer, S: SagaStore>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
        saved: &mut Saved<'_, S>,
    ) -> Result<(), StoredSagaError> {
        let mut first_error = None;
        while self.advance(app, data, state, &mut first_error).await {
            saved.save(state).await?;
        }
        let id = state.id;
        self.outcome(state, first_error)
            .map_err(|source| StoredSagaError::Saga { id, source })
    }
}

/// One stored instance a process resumed ([`Saga::resume_stored`], [`Saga::recover`]): how
/// far it got, and how its run ended.
///
/// ```
/// use catga_core::saga::{Resumed, SagaStatus};
///
/// fn finished_here(resumed: &Resumed) -> bool {
///     // `Compensated` is an outcome too: `outcome` is then `Err(StoredSagaError::Saga { .. })`.
///     resumed.status().is_some_and(SagaStatus::is_finished)
///         && !resumed.outcome.as_ref().is_err_and(|e| e.is_superseded())
/// }
/// # let _ = finished_here;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Resumed {
    /// The instance.
    pub id: Uuid,
    /// Its state as this process left it; `None` when the stored state did not decode.
    pub state: Option<SagaState>,
    /// How the run ended, as [`Saga::run_stored`] reports it: `Ok` once completed.
    pub outcome: Result<(), StoredSagaError>,
}

impl Resumed {
    /// The status this process left the instance in (a finished one unless the run
    /// stopped), or `None` when its stored state did not decode.
    pub fn status(&self) -> Option<super::SagaStatus> {
        self.state.as_ref().map(|state| state.status)
    }
}
