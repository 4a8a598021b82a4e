//! Scheduled messages: kept in a [`ScheduleStore`] by any instance, fired by the leader.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::leadership::{Elected, Leader};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::{Error, ErrorKind};
use crate::health::{Flag, HealthCheck};
use crate::mediator::Catga;
use crate::message::{Event, Message, Request};
use crate::pipeline::Layer;
use crate::store::schedule::{DynScheduleStore, ScheduleStore, Scheduled, is_stale};

/// Messages taken per claim (default).
pub const DEFAULT_SCHEDULER_BATCH: usize = 256;
/// How long a claim keeps a message from other leaders (default): a leader that dies after
/// claiming delays its messages by at most this.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(30);
/// The longest the leader sleeps before looking at the store again (default): the bound on
/// how late a message scheduled by another instance is noticed.
pub const DEFAULT_SCHEDULER_POLL: Duration = Duration::from_millis(500);
/// Why the scheduler's health check is down.
const FENCED_OFF: &str = "this instance leads but the schedule store has seen a higher fencing token: a newer leader, another election with another lease name, or a lease store that lost its counters";

/// Messages fired at once by the leader.
const IN_FLIGHT: usize = 32;

/// Schedules messages for later and, on the instance that leads, fires them when due.
///
/// Any instance schedules ([`send_at`](Self::send_at), [`publish_at`](Self::publish_at), their
/// `_after` forms); the message is encoded then, with a fresh message id (returned: the id to
/// [`cancel`](Self::cancel) it with), and kept in the store. [`run`](Self::run) fires due
/// messages while this instance holds the election's lease, passing its fencing token to the
/// store so a leader paused past its lease can neither take nor finish messages once another
/// leads. A command or query goes where `send` would send it (the reply is dropped), an event
/// is published; a message that cannot be fired for good (unknown name, undecodable, a handler
/// that refused it) goes to the application's dead-letter store; a transient failure leaves it
/// claimed, and it is fired again when the claim runs out.
///
/// A message is late by at most the poll interval (another instance scheduled it) plus the
/// time to fire those before it; with no leader it waits, and is fired once one leads.
///
/// ```
/// use std::time::Duration;
/// use catga_core::cluster::{Leadership, Scheduler};
/// use catga_core::prelude::*;
/// use catga_core::store::memory_lease::MemoryLeaseStore;
/// use catga_core::store::memory_schedule::MemoryScheduleStore;
///
/// #[event]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct ReminderDue { pub order: u64 }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Catga::builder().build()?;
/// let scheduler = Scheduler::new(app.clone(), MemoryScheduleStore::new());
/// scheduler.publish_after(ReminderDue { order: 7 }, Duration::from_secs(3600)).await?;
/// let election = Leadership::new(MemoryLeaseStore::new(), "scheduler").start();
/// let running = scheduler.run(&election);
/// # running.stop().await;
/// # Ok(()) }
/// ```
pub struct Scheduler<L> {
    app: Catga<L>,
    store: Arc<dyn DynScheduleStore>,
    batch: usize,
    claim_lease: Duration,
    poll: Duration,
    /// Woken when this instance schedules, so its own leader need not wait for the poll.
    scheduled: Arc<Notify>,
}

impl<L> std::fmt::Debug for Scheduler<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("batch", &self.batch)
            .field("claim_lease", &self.claim_lease)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl<L> Clone for Scheduler<L> {
    fn clone(&self) -> Self {
        Scheduler {
            app: self.app.clone(),
            store: Arc::clone(&self.store),
            batch: self.batch,
            claim_lease: self.claim_lease,
            poll: self.poll,
            scheduled: Arc::clone(&self.scheduled),
        }
    }
}

fn store_error(operation: &'static str) -> impl FnOnce(crate::error::BoxError) -> Error {
    move |source| ErrorKind::Store { operation, source }.into()
}

impl<L: Layer> Scheduler<L> {
    /// Schedules into `store` and fires through `app`.
    pub fn new(app: Catga<L>, store: impl ScheduleStore) -> Scheduler<L> {
        Scheduler::sharing(app, Arc::new(store))
    }

    /// The same, on a store shared with others.
    pub fn sharing(app: Catga<L>, store: Arc<impl ScheduleStore>) -> Scheduler<L> {
        Scheduler {
            app,
            store,
            batch: DEFAULT_SCHEDULER_BATCH,
            claim_lease: DEFAULT_CLAIM_LEASE,
            poll: DEFAULT_SCHEDULER_POLL,
            scheduled: Arc::new(Notify::new()),
        }
    }

    /// Messages taken per claim (default [`DEFAULT_SCHEDULER_BATCH`]; at least 1).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long a claim keeps a message from other leaders (default
    /// [`DEFAULT_CLAIM_LEASE`]): longer than firing a batch takes.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
    }

    /// The longest the leader sleeps between looks at the store (default
    /// [`DEFAULT_SCHEDULER_POLL`]).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Schedules the command or query `msg` to be sent at `at`. Returns its id.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] if it does not encode; [`ErrorKind::Store`] if the store fails.
    pub async fn send_at<M: Request>(&self, msg: M, at: SystemTime) -> Result<Uuid, Error> {
        self.keep(&msg, at).await
    }

    /// Schedules the event `event` to be published at `at`. Returns its id.
    ///
    /// # Errors
    /// As [`send_at`](Self::send_at).
    pub async fn publish_at<E: Event>(&self, event: E, at: SystemTime) -> Result<Uuid, Error> {
        self.keep(&event, at).await
    }

    /// [`send_at`](Self::send_at) `delay` from now.
    ///
    /// # Errors
    /// As [`send_at`](Self::send_at).
    pub async fn send_after<M: Request>(&self, msg: M, delay: Duration) -> Result<Uuid, Error> {
        self.keep(&msg, SystemTime::now() + delay).await
    }

    /// [`publish_at`](Self::publish_at) `delay` from now.
    ///
    /// # Errors
    /// As [`send_at`](Self::send_at).
    pub async fn publish_after<E: Event>(&self, event: E, delay: Duration) -> Result<Uuid, Error> {
        self.keep(&event, SystemTime::now() + delay).await
    }

    /// Cancels the scheduled message `id`; `false` if it was fired already (or never kept).
    ///
    /// # Errors
    /// [`ErrorKind::Store`] if the store fails.
    pub async fn cancel(&self, id: Uuid) -> Result<bool, Error> {
        self.store
            .cancel_dyn(id)
            .await
            .map_err(store_error("schedule store: cancel"))
    }

    async fn keep<M: Message>(&self, msg: &M, at: SystemTime) -> Result<Uuid, Error> {
        let envelope =
            Envelope::wrap(msg, &Context::new(), self.app.format()).map_err(|source| -> Error {
                ErrorKind::Codec {
                    message: M::NAME.to_string(),
                    source,
                }
                .into()
            })?;
        let id = envelope.id;
        let scheduled = Scheduled { due: at, envelope };
        self.store
            .schedule_dyn(&scheduled)
            .await
            .map_err(store_error("schedule store: schedule"))?;
        self.scheduled.notify_one();
        Ok(id)
    }
}

impl<L: Layer + Send + Sync + 'static> Scheduler<L> {
    /// Fires due messages whenever `election`'s instance leads, until stopped.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn run(&self, election: &Elected) -> RunningScheduler {
        let stop = CancellationToken::new();
        let mut leaders = election.subscribe();
        let scheduler = self.clone();
        let stopped = stop.clone();
        let fenced = Flag::new(FENCED_OFF);
        fenced.set_up();
        let flag = fenced.clone();
        let task = tokio::spawn(async move {
            loop {
                let leader = leaders.borrow_and_update().clone();
                if let Some(leader) = leader.filter(Leader::is_held) {
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        () = scheduler.lead(&leader, &flag) => {}
                    }
                    // Fenced off or not, this leadership is over.
                    flag.set_up();
                }
                tokio::select! {
                    () = stopped.cancelled() => return,
                    changed = leaders.changed() => if changed.is_err() { return },
                }
            }
        });
        RunningScheduler { stop, task, fenced }
    }

    /// Fires due messages until `leader` loses its leadership (or a store says a newer
    /// leader exists).
    async fn lead(&self, leader: &Leader, fenced: &Flag) {
        let token = leader.token();
        tracing::info!(target: "catga", token = token.get(), "the scheduler fires due messages here");
        while leader.is_held() {
            let claimed = tokio::select! {
                () = leader.lost() => return,
                claimed = self.store.claim_due_dyn(self.batch, token, self.claim_lease) => claimed,
            };
            let batch = match claimed {
                Ok(batch) => {
                    fenced.set_up();
                    batch
                }
                Err(error) if is_stale(&error) => {
                    // Usually a newer leader, whose elector will soon tell this one. If this
                    // instance goes on leading, the store's floor came from elsewhere: keep
                    // saying so, and try again, rather than fall silent.
                    fenced.set_down();
                    tracing::warn!(target: "catga", token = token.get(), error = %error,
                        "the schedule store refuses this leader's token: a newer leader fires scheduled messages, or (if this instance keeps leading) another election with another lease name, or a lease store that lost its counters, fires into the same store; nothing is fired here meanwhile");
                    self.pause(leader, self.poll.max(Duration::from_secs(1)))
                        .await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(target: "catga", error = %error,
                        "could not claim due scheduled messages; trying again");
                    self.pause(leader, self.poll).await;
                    continue;
                }
            };
            if batch.is_empty() {
                let wait = match self.store.next_due_dyn().await {
                    Ok(Some(due)) => due
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                        .min(self.poll),
                    _ => self.poll,
                };
                tokio::select! {
                    () = self.scheduled.notified() => {}
                    () = self.pause(leader, wait) => {}
                }
                continue;
            }
            let fired = self.fire(leader, batch).await;
            if fired.is_empty() {
                continue;
            }
            match self.store.fired_dyn(&fired, token).await {
                Ok(()) => {
                    metrics::counter!("catga_scheduled_fired_total").increment(fired.len() as u64);
                }
                Err(error) if is_stale(&error) => {
                    fenced.set_down();
                    tracing::warn!(target: "catga", token = token.get(), error = %error,
                        "the schedule store refused to mark a batch fired: a newer leader fires scheduled messages (this batch may go out twice, with the same message ids)");
                    continue;
                }
                Err(error) => tracing::warn!(target: "catga", error = %error,
                    "could not mark scheduled messages fired; they are fired again when their claim runs out (same message ids)"),
            }
        }
    }

    /// Fires `batch`, up to [`IN_FLIGHT`] at once, while `leader` holds; returns the ids that
    /// are done with (fired, or kept as dead letters).
    async fn fire(&self, leader: &Leader, batch: Vec<Scheduled>) -> Vec<Uuid> {
        futures::stream::iter(batch)
            .map(|scheduled| async move {
                // Checked before each one: a leader paused past its lease stops here.
                if !leader.is_held() {
                    return None;
                }
                let lateness = SystemTime::now()
                    .duration_since(scheduled.due)
                    .unwrap_or(Duration::ZERO);
                match self.app.fire_scheduled(&scheduled.envelope).await {
                    Ok(()) => {
                        metrics::histogram!("catga_scheduled_lateness_seconds")
                            .record(lateness.as_secs_f64());
                        Some(scheduled.id())
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(target: "catga", message = %scheduled.envelope.name,
                            message_id = %scheduled.id(), error = %error,
                            "a scheduled message could not be fired; fired again when its claim runs out");
                        None
                    }
                    Err(error) => {
                        self.app.keep_unfired(&scheduled.envelope, &error).await;
                        Some(scheduled.id())
                    }
                }
            })
            .buffered(IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    async fn pause(&self, leader: &Leader, wait: Duration) {
        tokio::select! {
            () = leader.lost() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A scheduler firing on the leader (see [`Scheduler::run`]). Dropping it stops it too.
#[derive(Debug)]
#[must_use = "dropping a `RunningScheduler` stops firing; keep it while the instance runs"]
pub struct RunningScheduler {
    stop: CancellationToken,
    task: JoinHandle<()>,
    fenced: Flag,
}

impl RunningScheduler {
    /// A readiness check for [`Catga::add_health_check`](crate::Catga::add_health_check):
    /// down while this instance leads but the schedule store refuses its token (it has seen
    /// a higher one, so nothing is fired here), up otherwise. From memory, no I/O.
    pub fn health_check(&self) -> impl HealthCheck {
        self.fenced.clone()
    }

    /// Stops firing and returns once the scheduler's task ended (a message being fired is
    /// dropped mid-way and fired again when its claim runs out).
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningScheduler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
