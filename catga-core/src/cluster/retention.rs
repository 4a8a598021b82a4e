//! Retention sweeps on the leader: purging what the stores keep past its use (inbox records,
//! dead letters, expired idempotency replies, published outbox rows), by one instance.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::leadership::{Elected, Leader};
use super::singleton::Singleton;
use crate::error::BoxError;

/// Counter of records the sweeps removed, labelled `sweep` (the name given to
/// [`Retention::sweep`]). Unit: records.
pub const RETENTION_PURGED: &str = "catga_retention_purged_total";

/// Counter of sweeps that failed, labelled `sweep`.
pub const RETENTION_FAILURES: &str = "catga_retention_failures_total";

/// Default interval between two rounds of sweeps: one hour.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// One named purge: called once per round with a clone of its target.
type Purge = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, BoxError>> + Send + Sync>;

/// Retention sweeps that only the leader runs: each round calls every sweep once, in the
/// order given, then waits [`every`](Self::every) before the next round; a round starts as
/// soon as this instance becomes the leader. Made with [`Retention::new`], started with
/// [`run`](Self::run).
///
/// A purge of records older than an age is idempotent, so sweeps are not fenced: a former
/// leader that finishes a sweep late removes only what the new leader would remove too. One
/// sweeper is enough, and on the leader alone the stores are swept once per round instead
/// of once per instance.
///
/// Each sweep's outcome is counted ([`RETENTION_PURGED`], [`RETENTION_FAILURES`], labelled
/// `sweep`) and logged under the `catga` target: a count at `debug`, a failure at `warn`.
/// A failed sweep does not stop the others or the next round.
///
/// ```
/// use std::time::Duration;
/// use catga_core::cluster::{Leadership, Retention};
/// use catga_core::store::memory_lease::MemoryLeaseStore;
///
/// /// A store of yours; catga's own have `purge_older_than` / `purge_expired` too
/// /// (`PostgresDeadLetterStore`, `catga_postgres::Inbox`, `RedisDeadLetterStore`, …).
/// #[derive(Clone)]
/// struct AuditLog;
///
/// impl AuditLog {
///     async fn purge_older_than(&self, _age: Duration) -> Result<u64, std::io::Error> {
///         Ok(0) // DELETE … WHERE at < now() - age, returning the rows removed
///     }
/// }
///
/// # async fn demo() {
/// let election = Leadership::new(MemoryLeaseStore::new(), "retention").start();
/// let sweeping = Retention::new()
///     .every(Duration::from_secs(3600))
///     .sweep("audit_log", AuditLog, |log| async move {
///         log.purge_older_than(Duration::from_secs(30 * 86_400)).await
///     })
///     .run(&election);
/// # sweeping.stop().await;
/// # }
/// ```
#[must_use = "a `Retention` does nothing until it is `run`"]
pub struct Retention {
    every: Duration,
    sweeps: Vec<(Arc<str>, Purge)>,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sweeps.iter().map(|(name, _)| &**name).collect();
        f.debug_struct("Retention")
            .field("every", &self.every)
            .field("sweeps", &names)
            .finish()
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new()
    }
}

impl Retention {
    /// No sweeps yet, a round every [`DEFAULT_RETENTION_INTERVAL`].
    pub fn new() -> Retention {
        Retention {
            every: DEFAULT_RETENTION_INTERVAL,
            sweeps: Vec::new(),
        }
    }

    /// The time from the end of one round to the start of the next (default one hour). A
    /// zero interval is taken as one second, so a round that finds nothing to do does not
    /// spin.
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_secs(1));
        self
    }

    /// Adds a sweep named `name` (the `sweep` label and the log field): each round calls
    /// `purge` with a clone of `target` (a store, a pool: something cheap to clone) and
    /// counts the records it says it removed. `purge` is typically a store's
    /// `purge_older_than(age)` or `purge_expired()`.
    pub fn sweep<T, F, Fut, E>(mut self, name: impl Into<Arc<str>>, target: T, purge: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let purge: Purge = Arc::new(move || {
            let round = purge(target.clone());
            Box::pin(async move { round.await.map_err(Into::into) })
        });
        self.sweeps.push((name.into(), purge));
        self
    }

    /// Runs the sweeps while `election`'s instance leads (see
    /// [`Elected::run_while_leading`]): a round at once on each leadership, then one every
    /// interval; a round in progress is dropped when the leadership ends, between two
    /// sweeps or during one (a purge statement already sent completes on the server).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn run(self, election: &Elected) -> Singleton {
        let sweeps: Arc<[(Arc<str>, Purge)]> = self.sweeps.into();
        let every = self.every;
        election.run_while_leading(move |leader| rounds(leader, Arc::clone(&sweeps), every))
    }
}

/// Sweeps every `every` while `leader` holds.
async fn rounds(leader: Leader, sweeps: Arc<[(Arc<str>, Purge)]>, every: Duration) {
    while leader.is_held() {
        for (name, purge) in sweeps.iter() {
            if !leader.is_held() {
                return;
            }
            match purge().await {
                Ok(purged) => {
                    metrics::counter!(RETENTION_PURGED, "sweep" => Arc::clone(name))
                        .increment(purged);
                    tracing::debug!(target: "catga", sweep = %name, purged, "retention sweep");
                }
                Err(error) => {
                    metrics::counter!(RETENTION_FAILURES, "sweep" => Arc::clone(name)).increment(1);
                    tracing::warn!(target: "catga", sweep = %name, error = %error,
                        next_in = ?every, "a retention sweep failed; it runs again next round");
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
