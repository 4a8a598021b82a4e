//! The relay: publishes committed outbox rows and removes them once the transport took them.
//!
//! One claim path serves every trigger. The relay of the committing process is woken in
//! memory at commit (no poll delay), relays of other processes by `LISTEN/NOTIFY`, and a poll
//! interval catches whatever both missed (a relay that was down, a lost notification). Each
//! round claims a batch in a transaction with `FOR UPDATE SKIP LOCKED`, so two relays never
//! publish the same row at once, publishes it, and deletes (or marks) what the transport
//! acknowledged before committing. A relay that dies mid-batch commits nothing: its rows are
//! unlocked and published again: at most one batch per round in flight is published twice
//! (`batch × rounds_in_flight` rows, 512 by default), which an inbox absorbs.
//!
//! Order per ordering key: only a key's oldest unpublished row (its *head*) can be claimed,
//! together with the rows after it; another relay skips the locked head and cannot take the
//! rows behind it, since they are not heads while it exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use catga_core::Catga;
use catga_core::cluster::{Elected, LeaderGate};
use catga_core::pipeline::Layer;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::backlog::Backlog;
use super::round::Committed;
use super::row;
use crate::error::PostgresError;

/// Rows per claim unless configured.
const DEFAULT_BATCH: usize = 256;
/// The safety-net poll, for rows no notification announced.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Rounds in flight while a backlog is relayed unless configured.
const DEFAULT_ROUNDS_IN_FLIGHT: usize = 2;
const MAX_ROUNDS_IN_FLIGHT: usize = 16;
/// The most rows one claim may take: one batch per round in flight is also the most a crash
/// can publish twice.
const MAX_BATCH: usize = 10_000;
/// Rows a relay removes between two `VACUUM`s of the outbox. Claims walk the table's indexes
/// in position order, and every removed row leaves an entry there until a vacuum: without
/// this, a busy outbox makes each claim slower (a claim of one row took 1.7 ms after 20,000
/// removals, 0.16 ms after a vacuum, here), long before autovacuum's next visit.
const VACUUM_AFTER: usize = 10_000;

/// Publishes an [`Outbox`](super::Outbox)'s rows. Made by [`Outbox::relay`](super::Outbox::relay),
/// started with [`start`](Self::start). Run one in every instance: they share the work.
#[derive(Clone)]
pub struct OutboxRelay {
    pub(super) shared: Arc<Shared>,
    pub(super) batch: usize,
    poll: Duration,
    pub(super) keep_published: Option<Duration>,
    rounds_in_flight: usize,
    claim: Arc<str>,
    lock: Arc<str>,
    /// Rows removed since the last vacuum, by every clone of this relay.
    removed: Arc<AtomicUsize>,
    /// When set, only the leader claims rows other processes left (see
    /// [`recover_while_leading`](OutboxRelay::recover_while_leading)).
    leadership: LeaderGate,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("schema", &self.shared.schema)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .field("keep_published", &self.keep_published)
            .field("rounds_in_flight", &self.rounds_in_flight)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    pub(super) fn new(shared: Arc<Shared>) -> OutboxRelay {
        let table = shared.schema.table("outbox");
        // `{batch}` is put in the text when the batch is known (`claim_sql`): as a literal the
        // planner sizes the plan for it, where a `LIMIT $1` prepared statement falls back to a
        // generic plan sized for an unknown limit, measured ten times slower here.
        // The heads first (one index walk in position order, each checked against the
        // key's index for an older unpublished row), then each head's key followed through
        // the same index: no scan of the table, however long the backlog. The `LIMIT 1`
        // subqueries keep the planner from turning the checks into a join over every
        // unpublished row (see `round::begin` for the rest).
        let claim = format!(
            "WITH heads AS (\
               SELECT {head_columns} FROM {table} o \
               WHERE o.published_at IS NULL AND NOT EXISTS (SELECT 1 FROM (\
                 SELECT 1 FROM {table} p WHERE p.ordering_key = o.ordering_key \
                 AND p.published_at IS NULL AND p.position < o.position LIMIT 1) older) \
               ORDER BY o.position LIMIT {{batch}} FOR UPDATE SKIP LOCKED), \
             followers AS (\
               SELECT x.* FROM heads h CROSS JOIN LATERAL (\
                 SELECT {columns} FROM {table} r \
                 WHERE r.ordering_key = h.ordering_key AND r.published_at IS NULL \
                 AND r.position > h.position \
                 ORDER BY r.position LIMIT {{batch}} FOR UPDATE) x) \
             SELECT * FROM (SELECT * FROM heads UNION ALL SELECT * FROM followers) claimed \
             ORDER BY position LIMIT {{batch}}",
            columns = row::COLUMNS,
            head_columns = row::COLUMNS_OF_O,
        );
        OutboxRelay {
            shared,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            keep_published: None,
            rounds_in_flight: DEFAULT_ROUNDS_IN_FLIGHT,
            claim: claim.into(),
            lock: format!(
                "SELECT o.position FROM {table} o \
                 WHERE o.position = ANY($1) AND o.published_at IS NULL AND NOT EXISTS (SELECT 1 FROM (\
                   SELECT 1 FROM {table} p WHERE p.ordering_key = o.ordering_key \
                   AND p.published_at IS NULL AND p.position < o.position \
                   AND p.position <> ALL($1) LIMIT 1) older) \
                 ORDER BY o.position FOR UPDATE SKIP LOCKED"
            )
            .into(),
            removed: Arc::new(AtomicUsize::new(0)),
            leadership: LeaderGate::always(),
        }
    }

    /// The fast round's lock query: rows of a just-committed batch that are free and due
    /// (nothing older of their key outside the batch), by primary key.
    pub(super) fn lock_sql(&self) -> Arc<str> {
        Arc::clone(&self.lock)
    }

    /// Counts removed rows towards the next vacuum.
    pub(super) fn note_removed(&self, rows: usize) {
        self.removed.fetch_add(rows, Ordering::Relaxed);
    }

    /// Vacuums the outbox once enough rows were removed since the last time. Outside any
    /// transaction (VACUUM cannot run in one); it takes no lock that blocks writers. A role
    /// that may not vacuum the table only gets a log line.
    async fn vacuum_if_due(&self) {
        if self.removed.load(Ordering::Relaxed) < VACUUM_AFTER {
            return;
        }
        self.removed.store(0, Ordering::Relaxed);
        let table = self.shared.schema.table("outbox");
        if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
            .execute(&self.shared.pool)
            .await
        {
            tracing::debug!(target: "catga", error = %error, "outbox relay: could not vacuum the outbox; autovacuum will");
        }
    }

    /// The claim query for this relay's batch size.
    pub(super) fn claim_sql(&self) -> String {
        self.claim.replace("{batch}", &self.batch.to_string())
    }

    /// Rows claimed and published per round (default 256, at most 10,000). A crash repeats at
    /// most one batch per round in flight ([`rounds_in_flight`](Self::rounds_in_flight)).
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than 10,000.
    pub fn batch(mut self, rows: usize) -> Result<OutboxRelay, PostgresError> {
        if rows == 0 || rows > MAX_BATCH {
            return Err(PostgresError::InvalidOption {
                option: "batch",
                reason: format!("{rows} is not between 1 and {MAX_BATCH}"),
            });
        }
        self.batch = rows;
        Ok(self)
    }

    /// How often the relay looks for rows nobody announced (default 1 s). Commits in this
    /// process and `NOTIFY` from others wake it at once; this only bounds how late a row
    /// whose announcement was lost is published.
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for less than 10 ms.
    pub fn poll_interval(mut self, every: Duration) -> Result<OutboxRelay, PostgresError> {
        if every < Duration::from_millis(10) {
            return Err(PostgresError::InvalidOption {
                option: "poll_interval",
                reason: format!("{every:?} is shorter than 10 ms"),
            });
        }
        self.poll = every;
        Ok(self)
    }

    /// How many rounds run at once while a backlog is relayed (default 2, at most 16), each
    /// on a connection of its own: one claims while another publishes. A crash repeats up to
    /// one batch per round in flight; 1 keeps that to one batch.
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than 16.
    pub fn rounds_in_flight(mut self, rounds: usize) -> Result<OutboxRelay, PostgresError> {
        if rounds == 0 || rounds > MAX_ROUNDS_IN_FLIGHT {
            return Err(PostgresError::InvalidOption {
                option: "rounds_in_flight",
                reason: format!("{rounds} is not between 1 and {MAX_ROUNDS_IN_FLIGHT}"),
            });
        }
        self.rounds_in_flight = rounds;
        Ok(self)
    }

    /// Keeps published rows for `period` (their `published_at` set) instead of deleting them
    /// at once, for auditing; a sweep in the relay deletes them afterwards.
    pub fn keep_published(mut self, period: Duration) -> OutboxRelay {
        self.keep_published = Some(period);
        self
    }

    /// Claims the rows other processes left (their commits announced for a relay that never
    /// published them, or a process that died before its fast round) only while this instance
    /// leads `election`: one claim per poll across the service instead of one per instance,
    /// each costing the database a walk of the outbox's heads. This relay still publishes its
    /// own process's commits, from memory and by claiming what its fast round could not,
    /// whether it leads or not. A claim needs no fencing token: it is a row lock, taken by
    /// whichever relay is first and held only by its transaction; rows a dead leader left are
    /// claimed by the next leader's first round, one lease TTL later at most. Without it
    /// (the default), every relay claims.
    pub fn recover_while_leading(mut self, election: &Elected) -> OutboxRelay {
        self.leadership = LeaderGate::of(election);
        self
    }

    /// Starts relaying for `app` on the current Tokio runtime.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the `LISTEN` connection cannot be opened.
    pub async fn start<L: Layer>(self, app: Catga<L>) -> Result<RunningRelay, PostgresError> {
        let mut listener = PgListener::connect_with(&self.shared.pool)
            .await
            .map_err(PostgresError::db("outbox relay: listen"))?;
        listener
            .listen(&self.shared.schema.outbox_channel())
            .await
            .map_err(PostgresError::db("outbox relay: listen"))?;
        // Taken before this returns, so every dispatch that begins after `start` hands its
        // rows to this relay (taken in the task, a send right after `start` could still see
        // no relay and leave its rows to the leader).
        let fast = self.take_fast();
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run(app, listener, fast, stop.clone()));
        Ok(RunningRelay {
            stop,
            task: Some(task),
        })
    }

    /// The hand-over queue of this process's commits, if no relay here took it before: the
    /// first relay started in a process gets the rows its commits hand over.
    fn take_fast(&self) -> Option<mpsc::Receiver<Vec<Committed>>> {
        let fast = self.shared.fast_rx.lock().ok().and_then(|mut rx| rx.take());
        if fast.is_some() {
            self.shared.fast_taken.store(true, Ordering::Release);
        }
        fast
    }

    /// Relays until `stop`, measuring the backlog beside it (see [`backlog`](super::backlog)):
    /// in the same task, so `abort` stops both, and on a connection of its own for each
    /// measurement, so a round never waits for one.
    async fn run<L: Layer>(
        self,
        app: Catga<L>,
        listener: PgListener,
        fast: Option<mpsc::Receiver<Vec<Committed>>>,
        stop: CancellationToken,
    ) {
        let backlog = Backlog::new(&self.shared);
        tokio::join!(self.relay(app, listener, fast, &stop), backlog.run(&stop));
    }

    async fn relay<L: Layer>(
        &self,
        app: Catga<L>,
        mut listener: PgListener,
        mut fast: Option<mpsc::Receiver<Vec<Committed>>>,
        stop: &CancellationToken,
    ) {
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Rows may be waiting from before this relay started.
        if self.leadership.is_open() {
            self.drain(&app, stop).await;
        }
        let mut leadership = self.leadership.clone();
        loop {
            let others = tokio::select! {
                () = stop.cancelled() => return,
                Some(committed) = recv(&mut fast) => {
                    self.fast(&app, committed, &mut fast).await;
                    false
                }
                // This process's own rows its fast round could not take: always.
                () = self.shared.committed.notified() => {
                    self.drain(&app, stop).await;
                    false
                }
                // Just became the leader: what the last one left.
                () = leadership.opened() => true,
                notification = listener.recv() => match notification {
                    // `FAST`: the committing process publishes the rows from memory, and
                    // wakes its own relay for what it could not; a claim here would only
                    // race it. This process's own rows committed otherwise (by an outer
                    // transaction): claim them, leader or not.
                    Ok(notification) if notification.payload() == &*self.shared.instance => {
                        self.drain(&app, stop).await;
                        false
                    }
                    // Anything else (another process without a relay, or its outer
                    // transaction): rows the leader claims.
                    Ok(notification) => notification.payload() != super::FAST,
                    Err(error) => {
                        // sqlx reconnects on the next `recv`; the poll covers the gap.
                        tracing::warn!(target: "catga", error = %error, "outbox relay: LISTEN connection lost; reconnecting");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                        true
                    }
                },
                _ = poll.tick() => true,
            };
            if others && self.leadership.is_open() {
                self.drain(&app, stop).await;
            }
            self.vacuum_if_due().await;
        }
    }

    /// Publishes rows just committed here, from memory, with everything else handed over
    /// meanwhile (one round for all); a claim round then takes whatever it could not.
    async fn fast<L: Layer>(
        &self,
        app: &Catga<L>,
        committed: Vec<Committed>,
        fast: &mut Option<mpsc::Receiver<Vec<Committed>>>,
    ) {
        let mut pending = committed;
        if let Some(rx) = fast.as_mut() {
            while pending.len() < self.batch
                && let Ok(more) = rx.try_recv()
            {
                pending.extend(more);
            }
        }
        // Rounds of at most a batch, like claim rounds, so a crash repeats no more than a
        // batch per round whatever one command published.
        let mut short = false;
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(self.batch));
            let expected = pending.len();
            let published = match self.fast_round(app, pending).await {
                Ok(published) => published,
                Err(error) => {
                    tracing::warn!(target: "catga", error = %error, "outbox relay: a fast round failed; a claim round publishes its rows");
                    0
                }
            };
            short |= published < expected;
            pending = rest;
        }
        if short {
            // Locked by another relay, behind an older row, or failed: a claim round decides.
            self.shared.committed.notify_one();
        }
    }

    /// Relays the backlog; a failure is logged and left to the next trigger.
    async fn drain<L: Layer>(&self, app: &Catga<L>, stop: &CancellationToken) {
        if let Err(error) = self.relay_backlog_until(app, stop).await {
            tracing::warn!(target: "catga", error = %error, "outbox relay: a round failed; its rows stay in the outbox and are published later");
        }
    }

    /// Relays rounds until the outbox has nothing left to claim, with
    /// [`rounds_in_flight`](Self::rounds_in_flight) rounds at a time, and returns how many rows
    /// were claimed. What a started relay does when woken; for tests and tools.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the database failed; the rows of a failed round stay in
    /// the outbox.
    pub async fn relay_backlog<L: Layer>(&self, app: &Catga<L>) -> Result<usize, PostgresError> {
        self.relay_backlog_until(app, &CancellationToken::new())
            .await
    }

    async fn relay_backlog_until<L: Layer>(
        &self,
        app: &Catga<L>,
        stop: &CancellationToken,
    ) -> Result<usize, PostgresError> {
        // Each lane runs rounds until one claims less than a full batch. The lanes' claims
        // cannot overlap (`SKIP LOCKED`, and a key's rows go with its head), so while one
        // lane publishes, another is already claiming: the claim's cost is hidden.
        let lane = || async {
            let mut total = 0;
            loop {
                if stop.is_cancelled() {
                    return Ok(total);
                }
                let claimed = self.relay_once(app).await?;
                total += claimed;
                if claimed < self.batch {
                    return Ok(total);
                }
            }
        };
        let lanes = futures::future::join_all((0..self.rounds_in_flight).map(|_| lane())).await;
        let mut total = 0;
        for lane in lanes {
            total += lane?;
        }
        Ok(total)
    }

    /// One round: claims up to a batch, publishes it and removes what was published. Returns
    /// how many rows were claimed. For tests and tools; a started relay calls it itself.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the database failed; nothing claimed in this round was
    /// then removed.
    pub async fn relay_once<L: Layer>(&self, app: &Catga<L>) -> Result<usize, PostgresError> {
        self.claim_round(app).await
    }
}

/// Receives from the fast channel, or never (a relay without one).
async fn recv(fast: &mut Option<mpsc::Receiver<Vec<Committed>>>) -> Option<Vec<Committed>> {
    match fast {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A running relay. [`shutdown`](Self::shutdown) stops it after the round in progress;
/// dropping it stops it too, without waiting.
#[must_use = "dropping a `RunningRelay` stops it; keep it while the application runs"]
pub struct RunningRelay {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRelay").finish_non_exhaustive()
    }
}

impl RunningRelay {
    /// Stops taking new rounds and waits for the one in progress.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops at once, abandoning the round in progress as a crash would: its transaction
    /// rolls back and its rows are published again by a relay. For tests of that path.
    pub fn abort(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
