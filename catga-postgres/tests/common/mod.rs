//! What the Postgres tests share: the server (or a reason to skip) and a schema of each test's
//! own, dropped at the end.

#![allow(dead_code)] // each test binary uses part of it

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
}

impl Db {
    /// Connects and migrates a schema named after `test`, or reports the server missing
    /// (`None`: the test returns).
    pub async fn open(test: &str) -> Option<Db> {
        let url = url();
        // The label is shortened before the unique suffix is added, so a long test name
        // (a conformance scenario's) still gets a schema of its own: `t_`, at most 51
        // characters of the name, 10 of the suffix.
        let label: String = test.chars().take(51).collect();
        let name = testkit::unique(&label)
            .to_lowercase()
            .replace(['-', '.', ':'], "_");
        let name: String = format!("t_{name}").chars().take(63).collect();
        let schema = Schema::new(name).expect("a valid schema name");
        // The test's own tables (created by the test) are reached unqualified, as an
        // application's are: the schema leads every connection's search path.
        let search_path = format!("SET search_path TO {schema}, public");
        let connect = PgPoolOptions::new()
            .max_connections(16)
            .after_connect(move |conn, _| {
                let sql = search_path.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql)).await?;
                    Ok(())
                })
            })
            .connect(&url);
        let pool = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => {
                services::unavailable(
                    test,
                    &format!("Postgres unreachable: {e}"),
                    "set CATGA_POSTGRES_URL or run ../shared/services.sh postgres",
                );
                return None;
            }
            Err(_) => {
                services::unavailable(
                    test,
                    "Postgres did not answer within 5 s",
                    "set CATGA_POSTGRES_URL or run ../shared/services.sh postgres",
                );
                return None;
            }
        };
        migrate(&pool, &schema).await.expect("migrations apply");
        Some(Db { pool, schema })
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

impl Drop for Db {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        // Best effort, off the test's runtime (which may be shutting down).
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            });
        })
        .join();
    }
}
