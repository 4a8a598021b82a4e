//! The event store on Postgres: event streams with optimistic concurrency, in the dispatch's
//! transaction when there is one, and one global, commit-ordered log for projections.
//!
//! **Tables.** `<schema>.events` holds the events, one row each, keyed by `(stream, version)`
//! (a primary key: a second row for a version cannot exist), with the payload as `bytea`, byte
//! for byte. `<schema>.event_streams` holds each stream's version; an append moves it from the
//! version the writer expected to the new one in the same statement that inserts the events
//! (`UPDATE … WHERE version = $expected`, or an `INSERT … ON CONFLICT DO NOTHING` for a new
//! stream). A writer that lost the race finds no row to move, inserts nothing and gets
//! [`EventStoreError::Conflict`] with the version it lost to: no unique violation, so a
//! conflict does not abort the transaction it ran in, and [`Repository::execute`] can reload
//! and try again inside that same transaction. (Should a writer that bypasses `event_streams`
//! make the `(stream, version)` key collide, that unique violation is a conflict too.)
//!
//! **Transactions.** Inside a dispatch the [`Outbox`](crate::Outbox) or
//! [`Inbox`](crate::Inbox) behaviour runs, [`append`](EventStore::append) and
//! [`load`](EventStore::load) go through the dispatch's transaction ([`Tx::current`]): an
//! aggregate's events commit together with the handler's other writes and the events it
//! published to the outbox, or not at all, and a load sees the dispatch's own appends.
//! Elsewhere they use the pool, each append in a transaction of its own.
//! [`append_in`](PostgresEventStore::append_in) appends through a connection (or transaction)
//! of the caller's.
//!
//! **The global log.** [`read_all`](PostgresEventStore::read_all) reads every stream's events
//! in the order of their *position*, a number each event gets when its transaction commits,
//! in commit order. A position drawn at insert (a plain `bigserial`) would not do: a
//! transaction that inserted first may commit last, so a reader could see position 11, move
//! past it, and never see 10 committed after. Here a deferred trigger draws the positions of a
//! committing transaction's events under a lock held until the commit is visible, so once a
//! reader sees a position, every smaller position is visible too or will never exist. A
//! projection keeps the position of the last event it applied (best in the same transaction
//! as the read model it writes) and asks for the events after it; it misses nothing and needs
//! no gap detection. Positions can have gaps (a sequence is not transactional: a commit that
//! failed after drawing one leaves a hole); gaps mean nothing. Events of a transaction that
//! has not committed have no position and are not read, not even by that transaction.
//!
//! The price is that transactions appending events commit one at a time: each holds the lock
//! from its position assignment to the end of its commit (about one WAL flush), which bounds
//! such commits to roughly one per flush latency. Transactions that append no events are not
//! affected.
//!
//! [`Repository::execute`]: catga_core::aggregate::Repository::execute

use std::sync::Arc;
use std::time::SystemTime;

use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::column::{self, DEFAULT_MAX_WRITE_BYTES};
use crate::error::PostgresError;
use crate::schema::{Schema, sql};
use crate::tx::Tx;

const TABLE: &str = "events";
/// The name Postgres gives the primary key `(stream, version)` of `events`.
const STREAM_VERSION_KEY: &str = "events_pkey";

/// An [`EventStore`] in the tables `<schema>.events` and `<schema>.event_streams` (created by
/// [`migrate`](crate::migrate)), shared by every instance on the same schema; see the
/// [module docs](self) for how appends, transactions and the global log work.
///
/// Round trips: an append is one statement (plus one to read the stream's version after a
/// conflict); a load is one; an empty append is one (it reads the version). Cheap to clone.
///
/// Refused before anything is sent, as [`EventStoreError::Backend`] with a [`PostgresError`]:
/// an append whose payloads and names together exceed [`max_write_bytes`](Self::max_write_bytes)
/// (64 MiB by default; [`PostgresError::TooLarge`]); stream names or event types holding a NUL
/// character ([`PostgresError::Unrepresentable`]); an append that would take a stream past
/// version `i64::MAX`. An expected version beyond `i64::MAX` is a
/// [`Conflict`](EventStoreError::Conflict): no stream is at it.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::store::event::{EventStore, NewEvent};
/// use catga_postgres::{PostgresEventStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let store = PostgresEventStore::new(pool, &schema);
/// store.append("order-1", 0, vec![NewEvent::new("Placed", br#"{"total":42}"#.to_vec())]).await?;
/// // A projection: everything after the last position it applied.
/// for (position, event) in store.read_all(0, 100).await? {
///     println!("{position}: {} v{} {}", event.stream, event.version, event.event_type);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    sql: Arc<Statements>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

struct Statements {
    /// An append to a new stream (expected version 0).
    append_new: Arc<str>,
    /// An append to a stream at the expected version.
    append_next: Arc<str>,
    version: Arc<str>,
    load: Arc<str>,
    read_all: Arc<str>,
}

/// The columns of an event as read, after `version` or `stream, version`.
const EVENT_COLUMNS: &str = "event_id, event_type, payload, correlation_id, causation_id";

fn backend(stream: &str, error: PostgresError) -> EventStoreError {
    EventStoreError::backend(stream, error.boxed())
}

fn event(row: &PgRow, stream: Option<String>) -> Result<StoredEvent, PostgresError> {
    let columns = || -> Result<_, sqlx::Error> {
        let stream = match stream {
            Some(stream) => stream,
            None => row.try_get("stream")?,
        };
        Ok((
            stream,
            row.try_get::<i64, _>("version")?,
            row.try_get::<i64, _>("recorded_at_us")?,
            StoredEvent {
                stream: String::new(),
                version: 0,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                recorded_at: SystemTime::UNIX_EPOCH,
                correlation_id: row.try_get("correlation_id")?,
                causation_id: row.try_get("causation_id")?,
            },
        ))
    };
    let (stream, version, recorded_at, mut event) =
        columns().map_err(PostgresError::db("event store: read an event"))?;
    event.stream = stream;
    event.version = column::unsigned(TABLE, version)?;
    event.recorded_at = column::system_time(recorded_at);
    Ok(event)
}

/// The events of one append, as the arrays `UNNEST` takes, checked and measured.
struct Batch {
    ids: Vec<Uuid>,
    types: Vec<String>,
    payloads: Vec<Vec<u8>>,
    correlations: Vec<Option<Uuid>>,
    causations: Vec<Option<Uuid>>,
}

impl Batch {
    fn of(stream: &str, events: Vec<NewEvent>, limit: usize) -> Result<Batch, PostgresError> {
        let mut batch = Batch {
            ids: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            correlations: Vec::with_capacity(events.len()),
            causations: Vec::with_capacity(events.len()),
        };
        let mut bytes = 0usize;
        for event in events {
            column::text("an event type", &event.event_type)?;
            bytes = bytes
                .saturating_add(stream.len())
                .saturating_add(event.event_type.len())
                .saturating_add(event.payload.len());
            batch.ids.push(event.event_id);
            batch.types.push(event.event_type);
            batch.payloads.push(event.payload);
            batch.correlations.push(event.correlation_id);
            batch.causations.push(event.causation_id);
        }
        column::fits("an append of events", bytes, limit)?;
        Ok(batch)
    }
}

impl PostgresEventStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresEventStore {
        let events = schema.table(TABLE);
        let streams = schema.table("event_streams");
        // `$1` stream, `$2` expected version, `$3` new version, `$4..$8` the events. The
        // events are inserted only if `head` moved the stream's version (a cross join with
        // its zero or one row).
        let append = |head: String| {
            format!(
                "WITH head AS ({head}), \
                 ins AS (\
                   INSERT INTO {events} (stream, version, event_id, event_type, payload, \
                     correlation_id, causation_id) \
                   SELECT $1, $2 + e.n, e.id, e.ty, e.pay, e.corr, e.caus \
                   FROM head, UNNEST($4::uuid[], $5::text[], $6::bytea[], $7::uuid[], \
                     $8::uuid[]) WITH ORDINALITY AS e(id, ty, pay, corr, caus, n) \
                   RETURNING 1) \
                 SELECT (SELECT version FROM head) AS version, \
                   (SELECT count(*) FROM ins) AS written"
            )
            .into()
        };
        let recorded_at = column::micros_of("recorded_at");
        let sql = Statements {
            // A concurrent creator of the same stream makes this wait for its commit, then do
            // nothing: the stream exists.
            append_new: append(format!(
                "INSERT INTO {streams} (stream, version) VALUES ($1, $3) \
                 ON CONFLICT (stream) DO NOTHING RETURNING version"
            )),
            // A concurrent appender makes this wait for its commit, then re-check the version
            // it moved (read committed): no row, a conflict.
            append_next: append(format!(
                "UPDATE {streams} SET version = $3 WHERE stream = $1 AND version = $2 \
                 RETURNING version"
            )),
            version: format!("SELECT version FROM {streams} WHERE stream = $1").into(),
            load: format!(
                "SELECT version, {EVENT_COLUMNS}, {recorded_at} AS recorded_at_us FROM {events} \
                 WHERE stream = $1 AND version >= $2 ORDER BY version"
            )
            .into(),
            read_all: format!(
                "SELECT position, stream, version, {EVENT_COLUMNS}, \
                   {recorded_at} AS recorded_at_us \
                 FROM {events} WHERE position > $1 ORDER BY position LIMIT $2"
            )
            .into(),
        };
        PostgresEventStore {
            pool,
            sql: Arc::new(sql),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }

    /// The most bytes one append may hold in its payloads, event types and stream names
    /// together (default 64 MiB, at most [`MAX_WRITE_BYTES`](crate::store::MAX_WRITE_BYTES));
    /// a larger append is refused with [`PostgresError::TooLarge`].
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than `MAX_WRITE_BYTES`.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, PostgresError> {
        self.max_write_bytes = column::write_limit(bytes)?;
        Ok(self)
    }

    /// At most `limit` committed events of every stream whose global position is greater
    /// than `after` (0: from the start), in position order, each with its position.
    /// Positions follow commit order (see the [module docs](self)): pass the last position
    /// you applied to get what committed since, without missing any. Always reads through
    /// the pool, so events of the current dispatch's transaction are not among them.
    ///
    /// A projection that keeps its checkpoint in the same transaction as its read model, so a
    /// crash between the two can neither skip nor repeat an event:
    ///
    /// ```no_run
    /// # async fn demo(pool: sqlx::PgPool, store: catga_postgres::PostgresEventStore)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// // CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL);
    /// // CREATE TABLE totals (stream text PRIMARY KEY, events bigint NOT NULL);
    /// let mut after: i64 = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = 'totals'")
    ///     .fetch_optional(&pool).await?.unwrap_or(0);
    /// loop {
    ///     let batch = store.read_all(after, 500).await?;
    ///     let Some(&(last, _)) = batch.last() else { break };
    ///     let mut tx = pool.begin().await?;
    ///     for (_, event) in &batch {
    ///         sqlx::query("INSERT INTO totals VALUES ($1, 1) \
    ///                      ON CONFLICT (stream) DO UPDATE SET events = totals.events + 1")
    ///             .bind(&event.stream).execute(&mut *tx).await?;
    ///     }
    ///     sqlx::query("INSERT INTO checkpoints VALUES ('totals', $1) \
    ///                  ON CONFLICT (name) DO UPDATE SET position = $1")
    ///         .bind(last).execute(&mut *tx).await?;
    ///     tx.commit().await?;
    ///     after = last;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the query failed; [`PostgresError::MalformedRow`] for a
    /// row catga did not write.
    pub async fn read_all(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, StoredEvent)>, PostgresError> {
        let rows = sqlx::query(sql(&self.sql.read_all))
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::db("event store: read all"))?;
        rows.iter()
            .map(|row| {
                let position: i64 = row
                    .try_get("position")
                    .map_err(PostgresError::db("event store: read all"))?;
                Ok((position, event(row, None)?))
            })
            .collect()
    }

    /// [`append`](EventStore::append) through `conn`: a connection, or a transaction of the
    /// caller's (`&mut *tx`), whose commit then commits the events. A conflict leaves the
    /// transaction usable.
    ///
    /// # Errors
    /// As [`append`](EventStore::append).
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        column::text("a stream name", stream).map_err(|e| backend(stream, e))?;
        let conflict = |actual: u64| EventStoreError::Conflict {
            stream: stream.to_owned(),
            expected: expected_version,
            actual,
        };
        let Some(expected) = column::bigint(expected_version) else {
            return Err(conflict(self.version_in(conn, stream).await?));
        };
        if events.is_empty() {
            let actual = self.version_in(conn, stream).await?;
            return if actual == expected_version {
                Ok(actual)
            } else {
                Err(conflict(actual))
            };
        }
        let count = events.len();
        let batch =
            Batch::of(stream, events, self.max_write_bytes).map_err(|e| backend(stream, e))?;
        let new_version = u64::try_from(count)
            .ok()
            .and_then(|n| expected_version.checked_add(n))
            .and_then(column::bigint)
            .ok_or_else(|| {
                backend(
                    stream,
                    PostgresError::Unrepresentable {
                        what: "a stream's new version",
                        reason: "it would exceed the largest bigint",
                    },
                )
            })?;
        let statement = if expected == 0 {
            &self.sql.append_new
        } else {
            &self.sql.append_next
        };
        let appended = sqlx::query(sql(statement))
            .bind(stream)
            .bind(expected)
            .bind(new_version)
            .bind(batch.ids)
            .bind(batch.types)
            .bind(batch.payloads)
            .bind(batch.correlations)
            .bind(batch.causations)
            .fetch_one(&mut *conn)
            .await;
        let row = match appended {
            Ok(row) => row,
            Err(sqlx::Error::Database(error)) if error.constraint() == Some(STREAM_VERSION_KEY) => {
                // Only a writer that bypassed `event_streams` can cause this. The statement
                // failed as a whole (nothing written); in a transaction the transaction is
                // aborted, so the version is read outside it.
                let actual = self.version_on_pool(stream).await?;
                return Err(conflict(actual));
            }
            Err(error) => {
                return Err(backend(
                    stream,
                    PostgresError::db("event store: append")(error),
                ));
            }
        };
        let moved: Option<i64> = row
            .try_get("version")
            .map_err(|e| backend(stream, PostgresError::db("event store: append")(e)))?;
        if moved.is_none() {
            return Err(conflict(self.version_in(conn, stream).await?));
        }
        Ok(expected_version + count as u64)
    }

    /// The stream's version as `conn` sees it (0 for an unknown stream).
    async fn version_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
    ) -> Result<u64, EventStoreError> {
        let version: Option<i64> = sqlx::query_scalar(sql(&self.sql.version))
            .bind(stream)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| backend(stream, PostgresError::db("event store: read a version")(e)))?;
        column::unsigned("event_streams", version.unwrap_or(0)).map_err(|e| backend(stream, e))
    }

    async fn version_on_pool(&self, stream: &str) -> Result<u64, EventStoreError> {
        let mut conn = self.connection(stream).await?;
        self.version_in(&mut conn, stream).await
    }

    async fn connection(
        &self,
        stream: &str,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, EventStoreError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| backend(stream, PostgresError::db("event store: connect")(e)))
    }

    async fn load_in(
        &self,
        conn: &mut PgConnection,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        column::text("a stream name", stream).map_err(|e| backend(stream, e))?;
        // Versions beyond a bigint are past the end of every stream.
        let Some(from) = column::bigint(from_version) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(sql(&self.sql.load))
            .bind(stream)
            .bind(from)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| backend(stream, PostgresError::db("event store: load")(e)))?;
        rows.iter()
            .map(|row| event(row, Some(stream.to_owned())).map_err(|e| backend(stream, e)))
            .collect()
    }
}

impl EventStore for PostgresEventStore {
    /// Through the dispatch's transaction if there is one, else on the pool (see the
    /// [module docs](self)). One round trip; two after a conflict.
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        match Tx::current() {
            Ok(tx) => {
                let mut conn = tx.try_lock().map_err(|e| backend(stream, e))?;
                self.append_in(&mut conn, stream, expected_version, events)
                    .await
            }
            Err(_) => {
                let mut conn = self.connection(stream).await?;
                self.append_in(&mut conn, stream, expected_version, events)
                    .await
            }
        }
    }

    /// Through the dispatch's transaction if there is one (so it sees the dispatch's own
    /// appends), else on the pool. One round trip.
    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        match Tx::current() {
            Ok(tx) => {
                let mut conn = tx.try_lock().map_err(|e| backend(stream, e))?;
                self.load_in(&mut conn, stream, from_version).await
            }
            Err(_) => {
                let mut conn = self.connection(stream).await?;
                self.load_in(&mut conn, stream, from_version).await
            }
        }
    }
}
