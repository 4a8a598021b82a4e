//! The relay: publishes committed outbox rows and removes them once the transport took them.
//!
//! One claim path serves every trigger. The relay of the committing process is woken in
//! memory at commit (no poll delay), relays of other processes by `LISTEN/NOTIFY`, and a poll
//! interval catches whatever both missed (a relay that was down, a lost notification). Each
//! round claims a batch in a transaction with `FOR UPDATE SKIP LOCKED`, so two relays never
//! publish the same row at once, publishes it, and deletes (or marks) what the transport
//! acknowledged before committing. A relay that dies mid-batch commits nothing: its rows are
//! unlocked and published again (at most one batch of duplicates, which an inbox absorbs).
//!
//! Order per ordering key: only a key's oldest unpublished row (its *head*) can be claimed,
//! together with the rows after it; another relay skips the locked head and cannot take the
//! rows behind it, since they are not heads while it exists.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::Catga;
use catga_core::error::Error;
use catga_core::pipeline::Layer;
use catga_core::store::dead_letter::{DeadLetterRecord, FailureStage};
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use super::row::{self, Claimed};
use crate::error::PostgresError;

/// Rows per claim unless configured.
const DEFAULT_BATCH: usize = 256;
/// The safety-net poll, for rows no notification announced.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// The most rows one claim may take: one batch is also the most a crash can publish twice.
const MAX_BATCH: usize = 10_000;

/// Publishes an [`Outbox`](super::Outbox)'s rows. Made by [`Outbox::relay`](super::Outbox::relay),
/// started with [`start`](Self::start). Run one in every instance: they share the work.
#[derive(Clone)]
pub struct OutboxRelay {
    shared: Arc<Shared>,
    batch: usize,
    poll: Duration,
    keep_published: Option<Duration>,
    claim: Arc<str>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("schema", &self.shared.schema)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .field("keep_published", &self.keep_published)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    pub(super) fn new(shared: Arc<Shared>) -> OutboxRelay {
        let table = shared.schema.table("outbox");
        let claim = format!(
            "WITH heads AS (\
               SELECT o.ordering_key FROM {table} o \
               WHERE o.published_at IS NULL AND NOT EXISTS (\
                 SELECT 1 FROM {table} p WHERE p.ordering_key = o.ordering_key \
                 AND p.published_at IS NULL AND p.position < o.position) \
               ORDER BY o.position LIMIT $1 FOR UPDATE SKIP LOCKED) \
             SELECT {columns} FROM {table} \
             WHERE published_at IS NULL AND ordering_key IN (SELECT ordering_key FROM heads) \
             ORDER BY position LIMIT $1 FOR UPDATE",
            columns = row::COLUMNS
        );
        OutboxRelay {
            shared,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            keep_published: None,
            claim: claim.into(),
        }
    }

    /// Rows claimed and published per round (default 256, at most 10,000). A crash repeats at
    /// most one batch.
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

    /// Keeps published rows for `period` (their `published_at` set) instead of deleting them
    /// at once, for auditing; a sweep in the relay deletes them afterwards.
    pub fn keep_published(mut self, period: Duration) -> OutboxRelay {
        self.keep_published = Some(period);
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
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run(app, listener, stop.clone()));
        Ok(RunningRelay {
            stop,
            task: Some(task),
        })
    }

    async fn run<L: Layer>(self, app: Catga<L>, mut listener: PgListener, stop: CancellationToken) {
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Drain first: rows may be waiting from before this relay started.
            self.drain(&app, &stop).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.shared.committed.notified() => {}
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        // sqlx reconnects on the next `recv`; the poll covers the gap.
                        tracing::warn!(target: "catga", error = %error, "outbox relay: LISTEN connection lost; reconnecting");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                }
                _ = poll.tick() => {}
            }
        }
    }

    /// Relays rounds until one finds less than a full batch, or fails.
    async fn drain<L: Layer>(&self, app: &Catga<L>, stop: &CancellationToken) {
        loop {
            if stop.is_cancelled() {
                return;
            }
            match self.relay_once(app).await {
                Ok(done) if done >= self.batch => continue,
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(target: "catga", error = %error, "outbox relay: a round failed; its rows stay in the outbox and are published later");
                    return;
                }
            }
        }
    }

    /// One round: claims up to a batch, publishes it and removes what was published. Returns
    /// how many rows were claimed. For tests and tools; a started relay calls it itself.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the database failed; nothing claimed in this round was
    /// then removed.
    pub async fn relay_once<L: Layer>(&self, app: &Catga<L>) -> Result<usize, PostgresError> {
        let table = self.shared.schema.table("outbox");
        let mut tx = self
            .shared
            .pool
            .begin()
            .await
            .map_err(PostgresError::db("outbox relay: begin"))?;
        let rows = sqlx::query(crate::schema::sql(&self.claim))
            .bind(i64::try_from(self.batch).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(PostgresError::db("outbox relay: claim"))?;
        let claimed = rows.len();
        // Rows of one key are published one after the other, in position order; different
        // keys at the same time, so a batch costs about one broker round trip, not one per row.
        let mut keys: Vec<Vec<Claimed>> = Vec::new();
        let mut key_index: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for row in &rows {
            let claim = row::from_row(row).map_err(PostgresError::db("outbox relay: read row"))?;
            let at = *key_index
                .entry(claim.ordering_key.clone())
                .or_insert_with(|| {
                    keys.push(Vec::new());
                    keys.len() - 1
                });
            keys[at].push(claim);
        }
        let outcomes = futures::future::join_all(keys.into_iter().map(|rows| async move {
            let mut done = Vec::with_capacity(rows.len());
            for claim in rows {
                let position = claim.position;
                if let Err(error) = self.publish(app, claim).await {
                    // The transport is down or refused: the key's later rows wait, in order.
                    return (done, Some((position, error.to_string())));
                }
                done.push(position);
            }
            (done, None)
        }))
        .await;
        let mut done: Vec<i64> = Vec::with_capacity(claimed);
        let mut failed: Vec<(i64, String)> = Vec::new();
        for (published, failure) in outcomes {
            done.extend(published);
            failed.extend(failure);
        }
        if !done.is_empty() {
            let sql = if self.keep_published.is_some() {
                format!("UPDATE {table} SET published_at = now() WHERE position = ANY($1)")
            } else {
                format!("DELETE FROM {table} WHERE position = ANY($1)")
            };
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&done)
                .execute(&mut *tx)
                .await
                .map_err(PostgresError::db("outbox relay: remove published"))?;
        }
        if let Some((_, error)) = failed.first() {
            // The rows that could not be published, with the first failure's text (they
            // failed against the same broker in the same round).
            let positions: Vec<i64> = failed.iter().map(|(position, _)| *position).collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET attempts = attempts + 1, last_error = $2 WHERE position = ANY($1)"
            )))
            .bind(&positions)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(PostgresError::db("outbox relay: note failure"))?;
        }
        if let Some(period) = self.keep_published {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE published_at < now() - make_interval(secs => $1)"
            )))
            .bind(period.as_secs_f64())
            .execute(&mut *tx)
            .await
            .map_err(PostgresError::db("outbox relay: retention sweep"))?;
        }
        tx.commit()
            .await
            .map_err(PostgresError::db("outbox relay: commit"))?;
        if !done.is_empty() {
            metrics::counter!("catga_outbox_published_total").increment(done.len() as u64);
        }
        if !failed.is_empty() {
            // Not a full batch: the caller waits for the next trigger instead of spinning.
            return Ok(done.len());
        }
        Ok(claimed)
    }

    /// Publishes one claimed row. `Ok` means the row may be removed: the transport took it,
    /// or it can never be published and is now in the application's dead-letter store.
    async fn publish<L: Layer>(&self, app: &Catga<L>, claim: Claimed) -> Result<(), Error> {
        let Claimed {
            message_id,
            name,
            envelope,
            ..
        } = claim;
        let (failure, payload, correlation_id, causation_id, headers) = match envelope {
            Ok(envelope) => {
                let kept = (
                    envelope.payload.clone(),
                    envelope.correlation_id,
                    envelope.causation_id,
                    envelope.headers.clone(),
                );
                match app.publish_envelope(envelope).await {
                    Ok(()) => return Ok(()),
                    Err(error) if error.is_retryable() => return Err(error),
                    Err(error) => (error.to_string(), kept.0, kept.1, kept.2, kept.3),
                }
            }
            Err(malformed) => (
                malformed.to_string(),
                Vec::new(),
                Uuid::nil(),
                None,
                Vec::new(),
            ),
        };
        // Permanent: an unknown name, a payload that does not decode, a malformed row. Keep it
        // where a person can find it, once, and go on with the rest.
        tracing::error!(target: "catga", event = %name, message_id = %message_id, error = %failure,
            "outbox relay: a row can never be published; it is moved to the dead-letter store");
        let record = DeadLetterRecord {
            id: Uuid::now_v7(),
            message: name,
            handler: None,
            payload: Some(payload),
            code: "outbox".to_string(),
            error: failure,
            attempts: 1,
            message_id,
            correlation_id,
            causation_id,
            headers,
            failed_at: SystemTime::now(),
            stage: FailureStage::Publish,
            source: Some(self.shared.schema.table("outbox")),
            raw_headers: None,
        };
        app.dead_letters().put_dyn(record).await.map_err(|source| {
            catga_core::error::ErrorKind::Store {
                operation: "outbox relay: dead-letter a row",
                source,
            }
            .into()
        })
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
