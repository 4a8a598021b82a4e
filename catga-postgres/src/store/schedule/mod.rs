//! The schedule store on Postgres: scheduled messages in `<schema>.scheduled_messages`, kept by
//! any instance and claimed by the scheduler's leader, fenced by the tokens of its lease.
//!
//! **Tables** (created by [`migrate`](crate::migrate)). One row per scheduled message:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | `uuid`, primary key | the envelope's message id |
//! | `due` | `timestamptz NOT NULL` | when it is due, to the microsecond |
//! | `name`, `kind`, `correlation_id`, `causation_id`, `timestamp_ms`, `deadline_ms`, `traceparent`, `tracestate`, `format`, `payload` | as the outbox keeps them | the envelope's fields (`name` is `text COLLATE "C"`, `payload` is `bytea`) |
//! | `headers` | `jsonb` | the user headers, `[[name, value], …]`, as the dead-letter store keeps them |
//! | `claimed_until` | `timestamptz` | the end of the running (or last) claim; NULL until claimed |
//! | `claimed_by` | `bigint` | the fencing token of the leader that claimed it |
//!
//! and an index on `(due, id)`, the order claims take messages in. The fencing floor is the
//! one row of `<schema>.schedule_fence` (`id boolean PRIMARY KEY CHECK (id)`, `token bigint`):
//! the highest token a claim or a firing carried. The tables refuse what the store never
//! writes (an unknown kind or format, headers that are not pairs of strings, negative times, a
//! due time at infinity, half a claim).
//!
//! **Round trips.** Every operation is one statement, so one round trip (a statement's first
//! use on a connection takes one more, to prepare it; sqlx keeps it prepared):
//!
//! * schedule: `INSERT … ON CONFLICT (id) DO NOTHING`; no row inserted means the id is kept.
//! * cancel: `DELETE … WHERE id = $1`.
//! * claim_due: a statement of three parts. It raises the fence
//!   (`INSERT INTO schedule_fence … ON CONFLICT (id) DO UPDATE SET token = greatest(token,
//!   excluded.token) RETURNING token`); only if the floor it returns is the caller's token, it
//!   picks the due messages that no running claim holds (`… ORDER BY due, id LIMIT $n FOR
//!   UPDATE SKIP LOCKED`), and marks them claimed (`UPDATE … SET claimed_until = now() +
//!   lease, claimed_by = token … RETURNING` the messages). The statement returns the floor
//!   with the messages (a `LEFT JOIN`, so also when it took none), which the store sorts by
//!   `(due, id)`.
//! * fired: the same fence, then `DELETE … WHERE id = ANY($2)` only if it admitted the token.
//! * next_due: `SELECT min(due) … WHERE` unclaimed, or the claim ran out.
//!
//! **The fence.** Every claim and firing locks the fence row (`ON CONFLICT DO UPDATE` locks the
//! row it conflicts with) until its statement ends, so claims and firings run one at a time,
//! each seeing the floor as the one before left it. The update sets the floor to the greater of
//! it and the token presented, so the token it returns says both things at once: the caller's
//! token means admitted (the floor is now that token), a greater one means refused, and is the
//! floor to report in [`StaleToken`]'s `seen`. A refused statement takes, changes and deletes
//! nothing else. A claim that waited for the fence row picks with the snapshot its statement
//! began with, but `FOR UPDATE` checks each picked row again as the claim before left it
//! (Postgres's `READ COMMITTED` rechecking), so a message the other claim took, or a firing
//! deleted, is skipped: of concurrent claimers, each message goes to one.
//!
//! **Clocks.** Whether a message is due and whether a claim ran out are judged by the
//! database's clock alone (`now()`, the start of the statement), so instances need not agree on
//! the time to agree on which messages are claimable. A due time is the one the scheduling
//! process gave (its clock, when it scheduled "in an hour"), kept to the microsecond (the
//! nanoseconds dropped, so it falls due a little early rather than late).

mod row;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, StaleToken};
use catga_core::store::schedule::{ScheduleStore, Scheduled};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use self::row::{COLUMNS_OF_S, Columns};
use super::column::{self, DEFAULT_MAX_WRITE_BYTES};
use crate::error::PostgresError;
use crate::schema::{Schema, sql};

const FENCE: &str = "schedule_fence";

/// A [`ScheduleStore`] in the tables `<schema>.scheduled_messages` and
/// `<schema>.schedule_fence` (created by [`migrate`](crate::migrate)), shared by every instance
/// on the same schema. See the [module docs](self) for the tables, the statements, the fence
/// and the clock.
///
/// * Every operation is one round trip. Of concurrent claimers, in any number of processes,
///   each due message goes to one; a claim or firing with a token lower than one the store was
///   given fails with [`StaleToken`] (detected by
///   [`is_stale`](catga_core::store::schedule::is_stale)) and changes nothing.
/// * Due times are kept to the microsecond; due and claims are judged by the database's clock.
/// * Every field of the envelope is kept as given, the payload byte for byte and headers in
///   order. Refused before anything is sent: a message whose payload, name, headers and trace
///   context together exceed [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default),
///   with [`PostgresError::TooLarge`]; text holding a NUL character, a timestamp or deadline
///   beyond `i64::MAX` milliseconds or a due time Postgres cannot hold, with
///   [`PostgresError::Unrepresentable`] (as is a fencing token beyond `i64::MAX`, which no lease
///   store grants).
/// * The tables refuse rows the store never writes. Should their constraints be dropped, a
///   claim that takes such a row (an unknown kind or format, headers that are not `[[name,
///   value], …]`, a negative time, a due time at `-infinity`) fails with
///   [`PostgresError::MalformedRow`] naming the message's id; what it claimed with it is
///   claimable again once the claim runs out. Delete or repair the row.
///
/// Its operations use the pool, never the dispatch's transaction ([`Tx`](crate::Tx)): a
/// claim must be seen by other instances at once, and a message scheduled by a handler is kept
/// whatever becomes of the handler's transaction. Cheap to clone; does no I/O until used.
///
/// A [`Scheduler`](catga_core::cluster::Scheduler) on it, firing on the instance that leads
/// through a [`PostgresLeaseStore`](crate::PostgresLeaseStore):
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::Catga;
/// use catga_core::cluster::{Leadership, Scheduler};
/// use catga_postgres::{PostgresLeaseStore, PostgresScheduleStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let app = Catga::builder().build()?;
/// let scheduler = Scheduler::new(app, PostgresScheduleStore::new(pool.clone(), &schema));
/// let election = Leadership::new(PostgresLeaseStore::new(pool, &schema), "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// // Every instance schedules (`scheduler.publish_after(event, delay)`, `send_at`, …); the
/// // one that leads fires due messages, with its lease's fencing token.
/// let running = scheduler.run(&election);
/// // …
/// running.stop().await;
/// election.stop().await; // releases the lease: another instance fires at once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresScheduleStore {
    pool: PgPool,
    sql: Arc<Statements>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for PostgresScheduleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresScheduleStore")
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

/// The store's SQL, with the schema spliced in once.
struct Statements {
    schedule: Arc<str>,
    cancel: Arc<str>,
    claim_due: Arc<str>,
    fired: Arc<str>,
    next_due: Arc<str>,
}

/// Whether the fence admitted `presented`, from the floor the statement left: the greater of
/// the floor before and `presented`.
fn admitted(presented: FencingToken, floor: i64) -> Result<(), StaleToken> {
    match u64::try_from(floor) {
        Ok(seen) if seen > presented.get() => Err(StaleToken {
            presented,
            seen: FencingToken::new(seen),
        }),
        _ => Ok(()),
    }
}

impl PostgresScheduleStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresScheduleStore {
        let t = schema.table(row::TABLE);
        let f = schema.table(FENCE);
        // Raises the floor to the token `$1` unless it is higher; returns the floor after.
        let fence = format!(
            "fence AS ( \
               INSERT INTO {f} AS f (id, token) VALUES (true, $1) \
               ON CONFLICT (id) DO UPDATE SET token = greatest(f.token, EXCLUDED.token) \
               RETURNING token)"
        );
        // Whether the fence admitted `$1`: a one-time condition, evaluated (and the fence
        // raised, under its row lock) before any message row is read.
        let admitted = "EXISTS (SELECT FROM fence WHERE fence.token = $1)";
        let unclaimed = "(claimed_until IS NULL OR claimed_until <= now())";
        let sql = Statements {
            schedule: format!(
                "INSERT INTO {t} (id, due, name, kind, correlation_id, causation_id, \
                   timestamp_ms, deadline_ms, traceparent, tracestate, headers, format, payload) \
                 VALUES ($1, {due}, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13) \
                 ON CONFLICT (id) DO NOTHING",
                due = column::timestamp_of(2)
            )
            .into(),
            cancel: format!("DELETE FROM {t} WHERE id = $1").into(),
            claim_due: format!(
                "WITH {fence}, \
                 picked AS MATERIALIZED ( \
                   SELECT id FROM {t} \
                   WHERE due <= now() AND {unclaimed} AND {admitted} \
                   ORDER BY due, id LIMIT $2 \
                   FOR UPDATE SKIP LOCKED), \
                 claimed AS ( \
                   UPDATE {t} AS s SET claimed_until = now() + $3::interval, claimed_by = $1 \
                   WHERE s.id = ANY(ARRAY(SELECT id FROM picked)) \
                   RETURNING {COLUMNS_OF_S}) \
                 SELECT fence.token AS fence_token, claimed.* \
                 FROM fence LEFT JOIN claimed ON true"
            )
            .into(),
            fired: format!(
                "WITH {fence}, \
                 gone AS (DELETE FROM {t} WHERE id = ANY($2) AND {admitted} RETURNING id) \
                 SELECT fence.token AS fence_token, (SELECT count(*) FROM gone) AS gone \
                 FROM fence"
            )
            .into(),
            // Infinite due times (refused by the table) are left out: `+infinity` is never
            // due, and a claim reports `-infinity` as malformed.
            next_due: format!(
                "SELECT {} FROM {t} WHERE {unclaimed} AND isfinite(due)",
                column::micros_of("min(due)")
            )
            .into(),
        };
        PostgresScheduleStore {
            pool,
            sql: Arc::new(sql),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }

    /// The most bytes one message may hold in its payload, name, headers and trace context
    /// together (default 64 MiB, at most [`MAX_WRITE_BYTES`](crate::store::MAX_WRITE_BYTES));
    /// a larger one is refused with [`PostgresError::TooLarge`].
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than `MAX_WRITE_BYTES`.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, PostgresError> {
        self.max_write_bytes = column::write_limit(bytes)?;
        Ok(self)
    }

    async fn schedule_message(&self, message: &Scheduled) -> Result<bool, PostgresError> {
        let c = Columns::of(message, self.max_write_bytes)?;
        let done = sqlx::query(sql(&self.sql.schedule))
            .bind(c.id)
            .bind(c.due)
            .bind(c.name)
            .bind(c.kind)
            .bind(c.correlation_id)
            .bind(c.causation_id)
            .bind(c.timestamp_ms)
            .bind(c.deadline_ms)
            .bind(c.traceparent)
            .bind(c.tracestate)
            .bind(c.headers)
            .bind(c.format)
            .bind(c.payload)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("schedule store: schedule"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_message(&self, id: Uuid) -> Result<bool, PostgresError> {
        let done = sqlx::query(sql(&self.sql.cancel))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("schedule store: cancel"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        let rows = sqlx::query(sql(&self.sql.claim_due))
            .bind(row::token(token)?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(column::interval(lease))
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::db("schedule store: claim due messages"))?;
        // One row at least: the fence's, with the messages taken (none if it took none).
        let floor: i64 = match rows.first() {
            Some(first) => first
                .try_get("fence_token")
                .map_err(PostgresError::db("schedule store: read the fence"))?,
            None => return Err(no_fence().into()),
        };
        admitted(token, floor)?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(message) = row::scheduled(row)? {
                taken.push(message);
            }
        }
        taken.sort_by_key(|m| (m.due, m.id()));
        Ok(taken)
    }

    async fn fire(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        let floor: Option<i64> = sqlx::query_scalar(sql(&self.sql.fired))
            .bind(row::token(token)?)
            .bind(ids)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("schedule store: remove fired messages"))?;
        admitted(token, floor.ok_or_else(no_fence)?)?;
        Ok(())
    }

    async fn earliest_due(&self) -> Result<Option<SystemTime>, PostgresError> {
        let due: Option<i64> = sqlx::query_scalar(sql(&self.sql.next_due))
            .fetch_one(&self.pool)
            .await
            .map_err(PostgresError::db("schedule store: next due"))?;
        Ok(due.map(column::system_time))
    }
}

/// The fence returned no floor: its upsert always returns one, so the table is not the
/// store's.
fn no_fence() -> PostgresError {
    PostgresError::MalformedRow {
        table: FENCE,
        reason: "the fence returned no token".to_string(),
    }
}

impl ScheduleStore for PostgresScheduleStore {
    /// One round trip. Refuses oversized messages and what Postgres cannot store (see the
    /// type's docs) with a [`PostgresError`], before sending anything.
    async fn schedule(&self, message: &Scheduled) -> Result<bool, BoxError> {
        Ok(self.schedule_message(message).await?)
    }

    /// One round trip.
    async fn cancel(&self, id: Uuid) -> Result<bool, BoxError> {
        Ok(self.cancel_message(id).await?)
    }

    /// One round trip: the fence and the claim in one statement. A lease over 100 years is
    /// taken as 100 years.
    async fn claim_due(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        self.claim(limit, token, lease).await
    }

    /// One round trip: the fence and the removal in one statement (also for no ids, which
    /// raises the floor).
    async fn fired(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        self.fire(ids, token).await
    }

    /// One round trip.
    async fn next_due(&self) -> Result<Option<SystemTime>, BoxError> {
        Ok(self.earliest_due().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_after_the_fence_says_whether_the_token_was_admitted() {
        let token = FencingToken::new(5);
        assert_eq!(admitted(token, 5), Ok(()));
        assert_eq!(
            admitted(token, 6),
            Err(StaleToken {
                presented: token,
                seen: FencingToken::new(6)
            })
        );
        // The fence never returns less than the token presented; if it did, nothing newer
        // was seen.
        assert_eq!(admitted(token, 4), Ok(()));
        assert_eq!(admitted(token, -1), Ok(()));
    }
}
