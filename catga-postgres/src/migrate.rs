//! The migrations embedded in this crate, applied into a configurable schema.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::error::PostgresError;
use crate::schema::Schema;

/// The migrations in `catga-postgres/migrations/`, embedded at build time (no database is
/// needed to build).
static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Creates `schema` if needed and applies every migration of this crate that it lacks: the
/// tables of the outbox and inbox (`outbox`, `inbox`) and of the stores (`idempotency`,
/// `dead_letters`, `events`, `event_streams`, `sagas`, `leases`, `scheduled_messages`,
/// `schedule_fence`); `docs/persistence.md` and the stores' docs describe them.
/// Your application's own tables are yours to create.
///
/// Idempotent, and safe to call from several processes at once: sqlx's migrator takes a
/// Postgres advisory lock for the whole run, so one process applies and the others then find
/// nothing left to do. Applied migrations are recorded in `<schema>._sqlx_migrations`, apart
/// from any migrations of the application's own.
///
/// The migrations run on a connection of their own, taken out of the pool and closed
/// afterwards, because they set the connection's `search_path`.
///
/// # Errors
/// [`PostgresError::Database`] if no connection can be had; [`PostgresError::Migrate`] if a
/// migration fails, or one already applied differs from the embedded one.
pub async fn migrate(pool: &PgPool, schema: &Schema) -> Result<(), PostgresError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(PostgresError::db("migrate: connect"))?
        .detach();
    let mut migrator = Migrator::with_migrations(MIGRATIONS.iter().cloned().collect());
    migrator.create_schema(schema.as_str().to_string());
    migrator.dangerous_set_table_name(schema.table("_sqlx_migrations"));
    let failed = |source| PostgresError::Migrate {
        schema: schema.to_string(),
        source,
    };
    // Postgres accepts a schema on the search path before it exists; the migrator creates it
    // under its advisory lock, so two processes creating it at once do not race.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET search_path TO {schema}, public"
    )))
    .execute(&mut conn)
    .await
    .map_err(PostgresError::db("migrate: set search_path"))?;
    let outcome = migrator.run_direct(None, &mut conn, false).await;
    // The connection is closed either way (it never returns to the pool).
    let _ = sqlx::Connection::close(conn).await;
    outcome.map_err(failed)
}
