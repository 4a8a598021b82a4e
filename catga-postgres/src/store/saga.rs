//! The saga store on Postgres: saga instances in `<schema>.sagas`, one row each, saved with
//! optimistic concurrency, so a saga resumes in any instance after a crash.

use std::sync::Arc;
use std::time::SystemTime;

use catga_core::saga::SagaStatus;
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::column::{self, DEFAULT_MAX_WRITE_BYTES};
use crate::error::PostgresError;
use crate::schema::{Schema, sql};

const TABLE: &str = "sagas";

/// A [`SagaStore`] in the table `<schema>.sagas` (created by [`migrate`](crate::migrate)),
/// shared by every instance on the same schema.
///
/// A save is one statement: at expected version 0 an `INSERT … ON CONFLICT DO NOTHING` (a
/// row already there is a conflict), otherwise an `UPDATE … WHERE id = $1 AND version = $n`
/// (no row updated is a conflict). Of concurrent saves at one version, Postgres's row lock
/// lets one through and the others, re-checking the version after it committed, update
/// nothing. A conflict costs one more round trip, to read the version it lost to.
///
/// `updated_at` is the database's clock at the save (`now()`), to the microsecond, so
/// [`unfinished`](SagaStore::unfinished)'s cutoff compares times of one clock whichever
/// instance saved. `data` and `state` are kept byte for byte (`bytea`); `status` is
/// [`SagaStatus::as_str`], and the unfinished list reads a partial index over the running and
/// compensating instances.
///
/// Refused before anything is sent, as [`SagaStoreError::Backend`] with a [`PostgresError`]:
/// a record whose data, state and saga name together exceed
/// [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default; [`PostgresError::TooLarge`]),
/// a saga name holding a NUL character ([`PostgresError::Unrepresentable`]). An expected
/// version beyond `i64::MAX` is a [`Conflict`](SagaStoreError::Conflict): no instance is at it.
///
/// It uses the pool, never the dispatch's transaction: a saga's progress must be saved
/// whatever becomes of the transaction of the step that reported it. Cheap to clone.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::{Duration, SystemTime};
/// use catga_core::store::saga::SagaStore;
/// use catga_postgres::{PostgresSagaStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let store = PostgresSagaStore::new(pool, &schema);
/// // What a recovery loop resumes: checkouts nobody saved for a minute.
/// let stale = SystemTime::now() - Duration::from_secs(60);
/// for instance in store.unfinished("checkout", Some(stale), 100).await? {
///     println!("{} at version {}", instance.record.id, instance.version);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSagaStore {
    pool: PgPool,
    sql: Arc<Statements>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for PostgresSagaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSagaStore")
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

struct Statements {
    insert: Arc<str>,
    update: Arc<str>,
    version: Arc<str>,
    load: Arc<str>,
    unfinished: Arc<str>,
    unfinished_before: Arc<str>,
    delete: Arc<str>,
}

fn backend(error: PostgresError) -> SagaStoreError {
    SagaStoreError::backend(error.boxed())
}

fn stored(row: &PgRow) -> Result<StoredSaga, PostgresError> {
    let columns = || -> Result<_, sqlx::Error> {
        Ok((
            row.try_get::<Uuid, _>("id")?,
            row.try_get::<String, _>("saga")?,
            row.try_get::<String, _>("status")?,
            row.try_get::<Vec<u8>, _>("data")?,
            row.try_get::<Vec<u8>, _>("state")?,
            row.try_get::<i64, _>("version")?,
            row.try_get::<i64, _>("updated_at_us")?,
        ))
    };
    let (id, saga, status, data, state, version, updated_at) =
        columns().map_err(PostgresError::db("saga store: read an instance"))?;
    let status = SagaStatus::from_name(&status).ok_or_else(|| PostgresError::MalformedRow {
        table: TABLE,
        reason: format!("unknown saga status `{status}`"),
    })?;
    Ok(StoredSaga {
        record: SagaRecord {
            id,
            saga,
            status,
            data,
            state,
        },
        version: column::unsigned(TABLE, version)?,
        updated_at: column::system_time(updated_at),
    })
}

impl PostgresSagaStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresSagaStore {
        let t = schema.table(TABLE);
        let columns = format!(
            "id, saga, status, data, state, version, {} AS updated_at_us",
            column::micros_of("updated_at")
        );
        // The order a recovery loop wants, the id breaking ties so it is the same every time.
        let unfinished = |cutoff: &str| -> Arc<str> {
            format!(
                "SELECT {columns} FROM {t} \
                 WHERE saga = $1 AND status IN ('Running', 'Compensating'){cutoff} \
                 ORDER BY updated_at, id LIMIT $2"
            )
            .into()
        };
        let sql = Statements {
            insert: format!(
                "INSERT INTO {t} (id, saga, status, data, state, version, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6 + 1, now()) \
                 ON CONFLICT (id) DO NOTHING RETURNING version"
            )
            .into(),
            update: format!(
                "UPDATE {t} SET saga = $2, status = $3, data = $4, state = $5, \
                   version = version + 1, updated_at = now() \
                 WHERE id = $1 AND version = $6 RETURNING version"
            )
            .into(),
            version: format!("SELECT version FROM {t} WHERE id = $1").into(),
            load: format!("SELECT {columns} FROM {t} WHERE id = $1").into(),
            unfinished: unfinished(""),
            unfinished_before: unfinished(&format!(
                " AND updated_at < {}",
                column::timestamp_of(3)
            )),
            delete: format!("DELETE FROM {t} WHERE id = $1").into(),
        };
        PostgresSagaStore {
            pool,
            sql: Arc::new(sql),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }

    /// The most bytes one save may hold in its data, state and saga name together (default
    /// 64 MiB, at most [`MAX_WRITE_BYTES`](crate::store::MAX_WRITE_BYTES)); a larger record
    /// is refused with [`PostgresError::TooLarge`].
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than `MAX_WRITE_BYTES`.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, PostgresError> {
        self.max_write_bytes = column::write_limit(bytes)?;
        Ok(self)
    }

    /// The instance's version now (0 if it is not stored).
    async fn version(&self, id: Uuid) -> Result<u64, SagaStoreError> {
        let version: Option<i64> = sqlx::query_scalar(sql(&self.sql.version))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(PostgresError::db("saga store: read a version")(e)))?;
        column::unsigned(TABLE, version.unwrap_or(0)).map_err(backend)
    }
}

impl SagaStore for PostgresSagaStore {
    /// One round trip; two after a conflict.
    async fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> Result<u64, SagaStoreError> {
        column::text("a saga name", &record.saga).map_err(backend)?;
        let bytes = record.saga.len() + record.data.len() + record.state.len();
        column::fits("a saga instance", bytes, self.max_write_bytes).map_err(backend)?;
        let conflict = |actual: u64| SagaStoreError::Conflict {
            id: record.id,
            expected: expected_version,
            actual,
        };
        let Some(expected) = column::bigint(expected_version) else {
            return Err(conflict(self.version(record.id).await?));
        };
        let query = if expected == 0 {
            sqlx::query_scalar(sql(&self.sql.insert))
        } else {
            sqlx::query_scalar(sql(&self.sql.update))
        };
        let saved: Option<i64> = query
            .bind(record.id)
            .bind(&record.saga)
            .bind(record.status.as_str())
            .bind(&record.data)
            .bind(&record.state)
            .bind(expected)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(PostgresError::db("saga store: save")(e)))?;
        match saved {
            Some(version) => column::unsigned(TABLE, version).map_err(backend),
            None => Err(conflict(self.version(record.id).await?)),
        }
    }

    /// One round trip.
    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        let row = sqlx::query(sql(&self.sql.load))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend(PostgresError::db("saga store: load")(e)))?;
        row.as_ref().map(stored).transpose().map_err(backend)
    }

    /// One round trip, on the partial index `sagas_unfinished`.
    async fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        column::text("a saga name", saga).map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match updated_before {
            None => sqlx::query(sql(&self.sql.unfinished))
                .bind(saga)
                .bind(limit),
            Some(before) => sqlx::query(sql(&self.sql.unfinished_before))
                .bind(saga)
                .bind(limit)
                .bind(column::since_epoch("a cutoff time", before).map_err(backend)?),
        };
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend(PostgresError::db("saga store: unfinished")(e)))?;
        rows.iter()
            .map(stored)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    /// One round trip.
    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        let done = sqlx::query(sql(&self.sql.delete))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| backend(PostgresError::db("saga store: delete")(e)))?;
        Ok(done.rows_affected() > 0)
    }
}
