//! What the Postgres tests share: the server (or a reason to skip) and a schema of each test's
//! own, dropped at the end; a PostgreSQL server of a test's own for the tests that crash and
//! restart it ([`private_postgres`]).

#![allow(dead_code)] // each test binary uses part of it

pub mod private_nats;
pub mod private_postgres;
pub mod redis_corner;
pub mod round_trips;

use std::time::Duration;

use catga_core::testkit::{self, services};
use catga_postgres::{Schema, migrate};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The server the tests use: `CATGA_POSTGRES_URL`, else the local one.
pub fn url() -> String {
    services::url(
        "CATGA_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// A test's corner of the database: a fresh, migrated schema. Dropping it drops the schema.
pub struct Db {
    pub pool: PgPool,
    pub schema: Schema,
    /// The server, for dropping the schema on a connection of the dropping thread's own.
    url: String,
}

impl Db {
    /// Connects and migrates a schema named after `test`, or reports the server missing
    /// (`None`: the test returns).
    pub async fn open(test: &str) -> Option<Db> {
        match Db::open_on(test, &url(), PgPoolOptions::new().max_connections(16)).await {
            Ok(db) => Some(db),
            Err(why) => {
                services::unavailable(
                    test,
                    &why,
                    "set CATGA_POSTGRES_URL or run ../shared/services.sh postgres",
                );
                None
            }
        }
    }

    /// A fresh, migrated schema named after `test` on the server at `url`, through a pool
    /// built from `options` (its search path set to the schema); `Err` says why the server
    /// could not be reached.
    pub async fn open_on(test: &str, url: &str, options: PgPoolOptions) -> Result<Db, String> {
        let schema = schema_for(test);
        let connect = with_search_path(options, &schema).connect(url);
        let pool = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(format!("Postgres unreachable: {e}")),
            Err(_) => return Err("Postgres did not answer within 5 s".to_string()),
        };
        migrate(&pool, &schema).await.expect("migrations apply");
        Ok(Db {
            pool,
            schema,
            url: url.to_string(),
        })
    }

    /// Rows left in the outbox.
    pub async fn outbox_rows(&self) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.outbox",
            self.schema
        )))
        .fetch_one(&self.pool)
        .await
        .expect("count outbox rows")
    }

    /// Runs `sql` (with `{schema}` replaced) on the pool.
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(
            sql.replace("{schema}", self.schema.as_str()),
        ))
        .execute(&self.pool)
        .await
        .expect("test SQL runs");
    }

    /// `SELECT count(*)` of `sql` (with `{schema}` replaced).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(
            sql.replace("{schema}", self.schema.as_str()),
        ))
        .fetch_one(&self.pool)
        .await
        .expect("test count runs")
    }
}

/// A schema of `test`'s own: `t_`, at most 51 characters of the name (shortened before the
/// unique suffix is added, so a long test name, a conformance scenario's, still gets a schema
/// of its own), 10 of the suffix.
pub fn schema_for(test: &str) -> Schema {
    let label: String = test.chars().take(51).collect();
    let name = testkit::unique(&label)
        .to_lowercase()
        .replace(['-', '.', ':'], "_");
    let name: String = format!("t_{name}").chars().take(63).collect();
    Schema::new(name).expect("a valid schema name")
}

/// `options` whose connections have `schema` first on their search path: the test's own
/// tables (created by the test) are reached unqualified, as an application's are.
pub fn with_search_path(options: PgPoolOptions, schema: &Schema) -> PgPoolOptions {
    let search_path = format!("SET search_path TO {schema}, public");
    options.after_connect(move |conn, _| {
        let sql = search_path.clone();
        Box::pin(async move {
            sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql)).await?;
            Ok(())
        })
    })
}

impl Drop for Db {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        // Best effort, off the test's runtime (which may be shutting down), on a connection
        // of its own: the pool's connections are driven by the test's runtime, which this
        // drop blocks (on a one-thread runtime a pool query here waits for its timeout).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
