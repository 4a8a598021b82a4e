//! [`Repository`]: loads aggregates by replaying their streams and saves what they recorded.

use std::fmt;
use std::marker::PhantomData;

use uuid::Uuid;

use super::error::{ExecuteError, RepositoryError};
use super::loaded::Loaded;
use super::root::Aggregate;
use crate::codec::{Codec, Json};
use crate::context::Context;
use crate::store::event::{EventStore, EventStoreError, NewEvent};

/// Loads and saves aggregates of type `A` in the event store `S`, with events as JSON.
///
/// * [`load`](Repository::load) replays the aggregate's stream; an id with no events gives a
///   fresh aggregate at version 0, so creating and changing an aggregate are the same code.
/// * [`save`](Repository::save) appends the recorded events, expecting the stream to be at
///   the version it was loaded at: if another writer saved in between, nothing is written
///   and the error [is a conflict](RepositoryError::is_conflict).
/// * [`execute`](Repository::execute) does load, command and save in one call, and on a
///   conflict reloads and runs the command again against the newer state, up to
///   [`max_attempts`](Repository::max_attempts) times.
///
/// The repository holds no state besides the store; share a store between repositories of
/// several aggregate types with an `Arc`.
pub struct Repository<A, S> {
    store: S,
    max_attempts: u32,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// How many times [`execute`](Repository::execute) runs a command by default before it
    /// gives up on a contended stream.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    /// A repository over `store`.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            aggregate: PhantomData,
        }
    }

    /// Sets how many times [`execute`](Repository::execute) runs a command in all when saves
    /// conflict (1 = no retry; 0 is taken as 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How many times [`execute`](Repository::execute) runs a command in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The event store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The aggregate `id`, rebuilt from every event of its stream. An id with no events gives
    /// `A::default()` at version 0.
    ///
    /// Fails with [`RepositoryError::Decode`] naming the stream and version of the first
    /// event that is not a valid `A::Event`.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, RepositoryError> {
        let stream = A::stream_id(id);
        let stored = self.store.load(&stream, 1).await?;
        let mut loaded = Loaded::<A>::new(id);
        for record in stored {
            let expected = loaded.stored_version() + 1;
            if record.version != expected {
                return Err(RepositoryError::OutOfOrder {
                    stream,
                    expected,
                    found: record.version,
                });
            }
            match Json.decode::<A::Event>(&record.payload) {
                Ok(event) => loaded.replay(&event),
                Err(source) => {
                    return Err(RepositoryError::Decode {
                        stream,
                        version: record.version,
                        event_type: record.event_type,
                        source,
                    });
                }
            }
        }
        tracing::trace!(
            aggregate = A::TYPE,
            stream = %stream,
            version = loaded.stored_version(),
            "aggregate loaded"
        );
        Ok(loaded)
    }

    /// Appends `loaded`'s uncommitted events, expecting its stream to be at
    /// [`stored_version`](Loaded::stored_version), and returns the stream's new version.
    /// Each event gets a fresh UUID v7 id, the name from [`Aggregate::event_type`] and the
    /// ids set with [`Loaded::caused_by`].
    ///
    /// On success the events are no longer uncommitted. On failure `loaded` is unchanged; after
    /// a conflict its state is stale, so load the aggregate again rather than saving it again.
    /// Saving with nothing recorded does not touch the store.
    pub async fn save(&self, loaded: &mut Loaded<A>) -> Result<u64, RepositoryError> {
        if loaded.uncommitted().is_empty() {
            return Ok(loaded.stored_version());
        }
        let stream = loaded.stream_id();
        let (correlation_id, causation_id) = loaded.causation();
        let mut events = Vec::with_capacity(loaded.uncommitted().len());
        for event in loaded.uncommitted() {
            let payload = match Json.encode(event) {
                Ok(payload) => payload,
                Err(source) => return Err(RepositoryError::Encode { stream, source }),
            };
            events.push(NewEvent {
                event_id: Uuid::now_v7(),
                event_type: A::event_type(event).to_owned(),
                payload,
                correlation_id,
                causation_id,
            });
        }
        let count = events.len();
        let version = self
            .store
            .append(&stream, loaded.stored_version(), events)
            .await?;
        loaded.mark_saved(version);
        tracing::debug!(
            aggregate = A::TYPE,
            stream = %stream,
            events = count,
            version,
            "aggregate saved"
        );
        Ok(version)
    }

    /// Loads aggregate `id`, runs `command` on its state and saves the events it returns.
    /// When another writer saved first, loads again and runs `command` again on the newer
    /// state, up to [`max_attempts`](Repository::max_attempts) runs in all; `command` must
    /// therefore only decide, with no side effects of its own.
    ///
    /// Returns the saved aggregate (nothing uncommitted). A command that returns no events
    /// saves nothing. Fails with [`ExecuteError::Rejected`] when the command refuses and
    /// [`ExecuteError::Contention`] when every run conflicted.
    pub async fn execute<F, I, E>(&self, id: &str, command: F) -> Result<Loaded<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<I, E>,
        I: IntoIterator<Item = A::Event>,
    {
        self.execute_with(id, (None, None), command).await
    }

    /// [`execute`](Repository::execute), storing the events with `ctx`'s correlation id and
    /// its message id as their causation id (see [`Loaded::caused_by`]).
    pub async fn execute_caused_by<F, I, E>(
        &self,
        id: &str,
        ctx: &Context,
        command: F,
    ) -> Result<Loaded<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<I, E>,
        I: IntoIterator<Item = A::Event>,
    {
        let causation = (Some(ctx.correlation_id()), Some(ctx.message_id()));
        self.execute_with(id, causation, command).await
    }

    async fn execute_with<F, I, E>(
        &self,
        id: &str,
        (correlation_id, causation_id): (Option<Uuid>, Option<Uuid>),
        mut command: F,
    ) -> Result<Loaded<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<I, E>,
        I: IntoIterator<Item = A::Event>,
    {
        let mut attempt = 1;
        loop {
            let mut loaded = self.load(id).await.map_err(ExecuteError::Repository)?;
            loaded
                .execute(&mut command)
                .map_err(ExecuteError::Rejected)?;
            loaded.set_causation(correlation_id, causation_id);
            match self.save(&mut loaded).await {
                Ok(_) => return Ok(loaded),
                Err(RepositoryError::Store(source @ EventStoreError::Conflict { .. })) => {
                    if attempt >= self.max_attempts {
                        return Err(ExecuteError::Contention {
                            stream: loaded.stream_id(),
                            attempts: attempt,
                            source,
                        });
                    }
                    tracing::debug!(
                        aggregate = A::TYPE,
                        id,
                        attempt,
                        error = %source,
                        "save conflicted; reloading and running the command again"
                    );
                    attempt += 1;
                }
                Err(other) => return Err(ExecuteError::Repository(other)),
            }
        }
    }
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            max_attempts: self.max_attempts,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::TYPE)
            .field("store", &self.store)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}
