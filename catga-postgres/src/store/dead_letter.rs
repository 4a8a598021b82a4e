//! The dead-letter store on Postgres: messages that could not be handled, kept in
//! `<schema>.dead_letters` with every field of their [`DeadLetterRecord`], to be inspected,
//! replayed or purged from any instance.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::column::{self, DEFAULT_MAX_WRITE_BYTES};
use crate::error::PostgresError;
use crate::schema::{Schema, sql};

const TABLE: &str = "dead_letters";

/// A [`DeadLetterStore`] in the table `<schema>.dead_letters` (created by
/// [`migrate`](crate::migrate)), shared by every instance on the same schema.
///
/// Every field of a record is kept as given: headers as a `jsonb` array of `[name, value]`
/// pairs (order and duplicates kept), the payload and raw headers as `bytea` (byte for byte;
/// an empty payload stays empty, an absent one absent), `failed_at` to the microsecond. Records
/// list oldest first by id (a UUID v7, so by creation time); putting a record whose id is
/// stored replaces it.
///
/// Besides the trait, records can be found by message name ([`by_message`](Self::by_message))
/// and by failure time ([`failed_between`](Self::failed_between)), and old ones purged
/// ([`purge_older_than`](Self::purge_older_than)).
///
/// Refused before anything is sent: a record whose payload, raw headers and text together
/// exceed [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default), with
/// [`PostgresError::TooLarge`]; text (names, error, headers, source) holding a NUL character,
/// which Postgres text cannot store, with [`PostgresError::Unrepresentable`].
///
/// It writes through the pool, never the dispatch's transaction ([`Tx`](crate::Tx)): a
/// dead letter is written because a dispatch failed, and must outlive that dispatch's
/// rollback. Cheap to clone.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_postgres::{PostgresDeadLetterStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let dead_letters = PostgresDeadLetterStore::new(pool, &schema);
/// let app = Catga::builder().dead_letters(dead_letters.clone()).build()?;
/// // The wire name: by default the type's name, e.g. `PlaceOrder`.
/// for record in dead_letters.by_message("PlaceOrder", 10).await? {
///     println!("{}: {}", record.id, record.error);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresDeadLetterStore {
    pool: PgPool,
    sql: Arc<Statements>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for PostgresDeadLetterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDeadLetterStore")
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

struct Statements {
    put: Arc<str>,
    list: Arc<str>,
    take: Arc<str>,
    count: Arc<str>,
    by_message: Arc<str>,
    failed_between: Arc<str>,
    purge: Arc<str>,
}

/// The name of a stage as serde writes it, which is what the table keeps.
fn stage_name(stage: FailureStage) -> &'static str {
    match stage {
        FailureStage::Handler => "handler",
        FailureStage::Delivery => "delivery",
        FailureStage::Publish => "publish",
        FailureStage::Compensation => "compensation",
    }
}

fn stage_named(name: &str) -> Result<FailureStage, PostgresError> {
    Ok(match name {
        "handler" => FailureStage::Handler,
        "delivery" => FailureStage::Delivery,
        "publish" => FailureStage::Publish,
        "compensation" => FailureStage::Compensation,
        other => {
            return Err(PostgresError::MalformedRow {
                table: TABLE,
                reason: format!("unknown failure stage `{other}`"),
            });
        }
    })
}

/// A record as read by the statements' column list.
fn record(row: &PgRow) -> Result<DeadLetterRecord, PostgresError> {
    // The columns whose types differ from the record's are converted after.
    let columns = || -> Result<_, sqlx::Error> {
        let record = DeadLetterRecord {
            id: row.try_get("id")?,
            message: row.try_get("message")?,
            handler: row.try_get("handler")?,
            payload: row.try_get("payload")?,
            code: row.try_get("code")?,
            error: row.try_get("error")?,
            attempts: 0,
            message_id: row.try_get("message_id")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            headers: Vec::new(),
            failed_at: column::system_time(row.try_get("failed_at_us")?),
            stage: FailureStage::default(),
            source: row.try_get("source")?,
            raw_headers: row.try_get("raw_headers")?,
        };
        let attempts: i64 = row.try_get("attempts")?;
        let headers: String = row.try_get("headers")?;
        let stage: String = row.try_get("stage")?;
        Ok((record, attempts, headers, stage))
    };
    let (mut record, attempts, headers, stage) =
        columns().map_err(PostgresError::db("dead-letter store: read a record"))?;
    record.attempts = u32::try_from(attempts).map_err(|_| PostgresError::MalformedRow {
        table: TABLE,
        reason: format!("{attempts} attempts is not a `u32`"),
    })?;
    record.headers = serde_json::from_str(&headers).map_err(|e| PostgresError::MalformedRow {
        table: TABLE,
        reason: format!("headers are not `[[name, value], …]`: {e}"),
    })?;
    record.stage = stage_named(&stage)?;
    Ok(record)
}

/// A limit as a `bigint` (a `usize` beyond it asks for everything anyway).
fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PostgresDeadLetterStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresDeadLetterStore {
        let t = schema.table(TABLE);
        let columns = format!(
            "id, message, handler, payload, code, error, attempts, message_id, correlation_id, \
             causation_id, headers::text AS headers, {} AS failed_at_us, stage, source, \
             raw_headers",
            column::micros_of("failed_at")
        );
        let sql = Statements {
            put: format!(
                "INSERT INTO {t} (id, message, handler, payload, code, error, attempts, \
                   message_id, correlation_id, causation_id, headers, failed_at, stage, source, \
                   raw_headers) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, {failed_at}, \
                   $13, $14, $15) \
                 ON CONFLICT (id) DO UPDATE SET message = EXCLUDED.message, \
                   handler = EXCLUDED.handler, payload = EXCLUDED.payload, code = EXCLUDED.code, \
                   error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
                   message_id = EXCLUDED.message_id, correlation_id = EXCLUDED.correlation_id, \
                   causation_id = EXCLUDED.causation_id, headers = EXCLUDED.headers, \
                   failed_at = EXCLUDED.failed_at, stage = EXCLUDED.stage, \
                   source = EXCLUDED.source, raw_headers = EXCLUDED.raw_headers",
                failed_at = column::timestamp_of(12)
            )
            .into(),
            list: format!("SELECT {columns} FROM {t} ORDER BY id LIMIT $1").into(),
            // Concurrent takes of one id: the first deletes, the others wait on its row lock
            // and then find it gone, so exactly one gets the record.
            take: format!("DELETE FROM {t} WHERE id = $1 RETURNING {columns}").into(),
            count: format!("SELECT count(*) FROM {t}").into(),
            by_message: format!(
                "SELECT {columns} FROM {t} WHERE message = $1 ORDER BY id LIMIT $2"
            )
            .into(),
            failed_between: format!(
                "SELECT {columns} FROM {t} WHERE failed_at >= {from} AND failed_at < {to} \
                 ORDER BY failed_at, id LIMIT $3",
                from = column::timestamp_of(1),
                to = column::timestamp_of(2)
            )
            .into(),
            purge: format!("DELETE FROM {t} WHERE failed_at < now() - $1::interval").into(),
        };
        PostgresDeadLetterStore {
            pool,
            sql: Arc::new(sql),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }

    /// The most bytes one record may hold in its payload, raw headers and text together
    /// (default 64 MiB, at most [`MAX_WRITE_BYTES`](crate::store::MAX_WRITE_BYTES)); a larger
    /// record is refused with [`PostgresError::TooLarge`].
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than `MAX_WRITE_BYTES`.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, PostgresError> {
        self.max_write_bytes = column::write_limit(bytes)?;
        Ok(self)
    }

    /// The oldest `limit` records of the message named `message` (its wire name), oldest
    /// first (by id).
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the query failed; [`PostgresError::MalformedRow`] for a
    /// row catga did not write.
    pub async fn by_message(
        &self,
        message: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, PostgresError> {
        column::text("a message name", message)?;
        let rows = sqlx::query(sql(&self.sql.by_message))
            .bind(message)
            .bind(self::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: by message"))?;
        rows.iter().map(record).collect()
    }

    /// At most `limit` records whose `failed_at` is in `from..until` (from inclusive, until
    /// exclusive), in order of `failed_at` (then id). Times are the clocks of the processes
    /// that dead-lettered the messages.
    ///
    /// # Errors
    /// [`PostgresError::Unrepresentable`] for a time too far from 1970;
    /// [`PostgresError::Database`] if the query failed; [`PostgresError::MalformedRow`] for a
    /// row catga did not write.
    pub async fn failed_between(
        &self,
        from: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, PostgresError> {
        let rows = sqlx::query(sql(&self.sql.failed_between))
            .bind(column::since_epoch("a start time", from)?)
            .bind(column::since_epoch("an end time", until)?)
            .bind(self::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: by failure time"))?;
        rows.iter().map(record).collect()
    }

    /// Deletes the records that failed more than `age` ago (by the database's clock against
    /// each record's `failed_at`) and returns how many. Ages over 100 years are taken as 100
    /// years.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the query failed.
    pub async fn purge_older_than(&self, age: Duration) -> Result<u64, PostgresError> {
        let done = sqlx::query(sql(&self.sql.purge))
            .bind(column::interval(age))
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: purge"))?;
        Ok(done.rows_affected())
    }

    async fn put_record(&self, record: DeadLetterRecord) -> Result<(), PostgresError> {
        let texts = [
            ("a dead letter's message name", Some(&record.message)),
            ("a dead letter's handler name", record.handler.as_ref()),
            ("a dead letter's code", Some(&record.code)),
            ("a dead letter's error", Some(&record.error)),
            ("a dead letter's source", record.source.as_ref()),
        ];
        let mut bytes = 0;
        for (what, text) in texts {
            if let Some(text) = text {
                column::text(what, text)?;
                bytes += text.len();
            }
        }
        for (name, value) in &record.headers {
            column::text("a dead letter's header", name)?;
            column::text("a dead letter's header", value)?;
        }
        let headers =
            serde_json::to_string(&record.headers).map_err(|_| PostgresError::Unrepresentable {
                what: "a dead letter's headers",
                reason: "they cannot be written as JSON",
            })?;
        bytes += headers.len()
            + record.payload.as_ref().map_or(0, Vec::len)
            + record.raw_headers.as_ref().map_or(0, Vec::len);
        column::fits("a dead letter", bytes, self.max_write_bytes)?;
        let failed_at = column::since_epoch("a dead letter's `failed_at`", record.failed_at)?;
        sqlx::query(sql(&self.sql.put))
            .bind(record.id)
            .bind(&record.message)
            .bind(&record.handler)
            .bind(&record.payload)
            .bind(&record.code)
            .bind(&record.error)
            .bind(i64::from(record.attempts))
            .bind(record.message_id)
            .bind(record.correlation_id)
            .bind(record.causation_id)
            .bind(headers)
            .bind(failed_at)
            .bind(stage_name(record.stage))
            .bind(&record.source)
            .bind(&record.raw_headers)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: put"))?;
        Ok(())
    }

    async fn list_records(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, PostgresError> {
        let rows = sqlx::query(sql(&self.sql.list))
            .bind(self::limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: list"))?;
        rows.iter().map(record).collect()
    }

    async fn take_record(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, PostgresError> {
        let row = sqlx::query(sql(&self.sql.take))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: take"))?;
        row.as_ref().map(record).transpose()
    }

    async fn count_records(&self) -> Result<usize, PostgresError> {
        let count: i64 = sqlx::query_scalar(sql(&self.sql.count))
            .fetch_one(&self.pool)
            .await
            .map_err(PostgresError::db("dead-letter store: count"))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }
}

impl DeadLetterStore for PostgresDeadLetterStore {
    /// One round trip. Refuses oversized records and text with NUL characters (see the type's
    /// docs) with a [`PostgresError`].
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        Ok(self.put_record(record).await?)
    }

    /// One round trip.
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        Ok(self.list_records(limit).await?)
    }

    /// One round trip (`DELETE … RETURNING`): of concurrent takes of one id, one gets it.
    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        Ok(self.take_record(id).await?)
    }

    /// One round trip (`count(*)`, which scans the table: keep it purged).
    async fn count(&self) -> Result<usize, BoxError> {
        Ok(self.count_records().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_named_as_serde_names_them() {
        for stage in [
            FailureStage::Handler,
            FailureStage::Delivery,
            FailureStage::Publish,
            FailureStage::Compensation,
        ] {
            let serde = serde_json::to_string(&stage).unwrap_or_default();
            assert_eq!(serde, format!("\"{}\"", stage_name(stage)));
            assert_eq!(stage_named(stage_name(stage)).ok(), Some(stage));
        }
        assert!(stage_named("elsewhere").is_err());
    }
}
