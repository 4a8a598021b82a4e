//! Recovery: finding the instances of a saga that a dead process left unfinished in a
//! [`SagaStore`], and finishing them.
//!
//! An instance counts as abandoned when nobody saved it for a grace period. A live run saves
//! after every command, so the grace must be longer than the longest a live run goes without
//! saving: one command with its retries (the saga's `step_timeout` or the application's
//! `request_timeout`, times a `Retry` layer's attempts), or one compensation with its retries
//! and backoff. A grace too short is safe but wasteful: the recovering process takes the
//! instance over, the live one stops at its next save, and the command in flight between the
//! two carries one message id, which `Idempotency` where it is handled runs once.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::Saga;
use super::stored::Resumed;
use crate::mediator::Catga;
use crate::pipeline::Layer;
use crate::store::saga::{SagaStore, SagaStoreError};

/// How [`Saga::recover`] looks for abandoned instances: how long an instance must have gone
/// unsaved, how many one call takes, and how many it runs at once.
///
/// ```
/// use std::time::Duration;
/// use catga_core::saga::Recovery;
///
/// // Steps take at most 10 s with their retries: an instance unsaved for a minute is abandoned.
/// let recovery = Recovery::after(Duration::from_secs(60)).limit(500).concurrency(32);
/// assert_eq!(recovery.grace(), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    grace: Duration,
    limit: usize,
    concurrency: usize,
}

impl Recovery {
    /// Instances nobody saved for `grace` (by the store's clock against this process's: keep
    /// them within a fraction of the grace of each other); at most 100 per call, 16 at once.
    pub const fn after(grace: Duration) -> Self {
        Recovery {
            grace,
            limit: 100,
            concurrency: 16,
        }
    }

    /// At most `limit` instances per call (the longest untouched first); 0 is taken as 1.
    #[must_use]
    pub const fn limit(mut self, limit: usize) -> Self {
        self.limit = if limit == 0 { 1 } else { limit };
        self
    }

    /// At most `concurrency` instances resumed at once (each runs its steps in order); 0 is
    /// taken as 1.
    #[must_use]
    pub const fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = if concurrency == 0 { 1 } else { concurrency };
        self
    }

    /// How long an instance must have gone unsaved to be resumed.
    pub const fn grace(&self) -> Duration {
        self.grace
    }
}

/// Why [`Saga::recover`] found no instances to resume: the store could not list them.
/// Nothing was resumed.
///
/// ```
/// use catga_core::saga::RecoverError;
/// use catga_core::store::saga::SagaStoreError;
///
/// let error = RecoverError { saga: "checkout", source: SagaStoreError::backend("connection refused") };
/// assert_eq!(
///     error.to_string(),
///     "saga `checkout`: listing its unfinished instances failed: the saga store failed: connection refused"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[error("saga `{saga}`: listing its unfinished instances failed: {source}")]
pub struct RecoverError {
    /// The saga.
    pub saga: &'static str,
    /// The store's error.
    #[source]
    pub source: SagaStoreError,
}

impl<D: Sync + 'static> Saga<D> {
    /// Finds this saga's instances that nobody saved for `recovery`'s grace period (a process
    /// died running them, or stopped on a failed save), and resumes each with
    /// [`resume_stored`](Self::resume_stored) until it completes or is compensated. Returns
    /// what became of each, in the order they finished.
    ///
    /// Safe to call from every process at once, and again while a previous call runs: an
    /// instance resumed by two processes is claimed by exactly one (the store's version
    /// decides), and the other reports it [`Superseded`](super::StoredSagaError::Superseded)
    /// without having sent anything. An instance that cannot be resumed (its data or state
    /// does not decode, or this definition cannot run it) is reported with its error and
    /// left in the store, unchanged, for an operator. Call it in a loop, e.g. every grace
    /// period.
    ///
    /// ```rust,standalone_crate
    /// use std::time::Duration;
    /// use catga_core::prelude::*;
    /// use catga_core::saga::{Recovery, Saga, SagaStatus};
    /// use catga_core::store::saga::{MemorySagaStore, SagaRecord, SagaStore};
    ///
    /// #[command]
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// pub struct Ship { pub parcel: u64 }
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("no courier")]
    /// pub struct NoCourier;
    ///
    /// #[handler] async fn ship(_: Ship) -> Result<(), NoCourier> { Ok(()) }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let delivery = Saga::builder("delivery")
    ///     .last_step("ship", |parcel: &u64| Ship { parcel: *parcel })
    ///     .build()?;
    /// let store = MemorySagaStore::new(); // shared by every process, e.g. `PostgresSagaStore`
    ///
    /// // A process saved a new instance, then died before shipping.
    /// let state = delivery.start();
    /// store.save(&SagaRecord::new(&state, b"17".to_vec())?, 0).await?;
    ///
    /// // Another process, at start and then every minute:
    /// let app = Catga::builder().layer(Idempotency::default()).build()?;
    /// let resumed = delivery.recover(&app, &store, Recovery::after(Duration::ZERO)).await?;
    /// assert_eq!(resumed.len(), 1);
    /// assert_eq!(resumed[0].status(), Some(SagaStatus::Completed));
    /// assert!(store.unfinished("delivery", None, 10).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`RecoverError`] when the store could not list the instances. How each instance's run
    /// ended is in its [`Resumed::outcome`].
    pub async fn recover<L: Layer, S: SagaStore>(
        &self,
        app: &Catga<L>,
        store: &S,
        recovery: Recovery,
    ) -> Result<Vec<Resumed>, RecoverError>
    where
        D: DeserializeOwned,
    {
        // A grace reaching before the epoch finds nothing anyway; the epoch says so.
        let before = SystemTime::now()
            .checked_sub(recovery.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let instances = store
            .unfinished(self.name, Some(before), recovery.limit)
            .await
            .map_err(|source| RecoverError {
                saga: self.name,
                source,
            })?;
        if !instances.is_empty() {
            tracing::info!(target: "catga", saga = self.name, found = instances.len(),
                "resuming abandoned saga instances");
        }
        let resumed = futures::stream::iter(instances)
            .map(|instance| self.resume_stored(app, store, instance))
            .buffer_unordered(recovery.concurrency)
            .collect()
            .await;
        Ok(resumed)
    }
}
