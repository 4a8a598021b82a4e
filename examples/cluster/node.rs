//! One instance of a service that runs singleton work on its leader.
//!
//! ```text
//! CLUSTER_BACKEND=redis CLUSTER_NODE=node-0 CLUSTER_SCHEMA=demo CLUSTER_PREFIX=demo \
//!     cargo run -p catga-examples-cluster --bin cluster-node
//! ```
//!
//! It elects a leader over the lease store of `CLUSTER_BACKEND` (`nats`, `redis` or
//! `postgres`; lease `CLUSTER_LEASE`, TTL `CLUSTER_TTL_MS`, 5000 by default). The leader fires
//! the messages scheduled in the PostgreSQL schedule store of schema `CLUSTER_SCHEMA` (created
//! and migrated if missing) with its fencing token; each fired `Tick` inserts one row into
//! `<schema>.ticks` (a second firing of the same tick finds its row: an effect applied once).
//! While it leads it also makes a fenced write every 50 ms, 50 ms after checking that it
//! still leads: what a process paused between its check and its write does, and what the
//! fencing token is for. Everything that happens is printed on stdout as one JSON line
//! ([`catga_examples_cluster::Line`]). `SIGTERM` stops it gracefully (the lease is released).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use catga_core::BoxError;
use catga_core::cluster::{Elected, Leadership, Scheduler};
use catga_core::prelude::*;
use catga_core::store::lease::LeaseStore;
use catga_core::store::schedule::{ScheduleStore, is_stale};
use catga_examples_cluster::{Backend, Line, Tick, nats_url, postgres_url, redis_url};
use catga_postgres::{PostgresLeaseStore, PostgresScheduleStore, Schema};
use sqlx::PgPool;

/// The effect of a tick: a row of `<schema>.ticks`.
pub struct Ticks {
    pool: PgPool,
    table: String,
    node: String,
}

pub mod effects {
    use super::*;

    #[handler]
    impl Ticks {
        async fn tick(&self, tick: &Tick) -> Result<(), sqlx::Error> {
            let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {} (n, node) VALUES ($1, $2) ON CONFLICT (n) DO NOTHING",
                self.table
            )))
            .bind(i64::try_from(tick.n).unwrap_or(i64::MAX))
            .bind(&self.node)
            .execute(&self.pool)
            .await?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let line = Line {
                node: self.node.clone(),
                event: if inserted.rows_affected() == 1 {
                    "handled".into()
                } else {
                    "duplicate".into()
                },
                token: None,
                n: Some(tick.n),
                detail: None,
                late_ms: Some(now_ms.saturating_sub(tick.due_ms)),
            };
            print(&line);
            Ok(())
        }
    }
}

/// Prints one line.
fn emit(node: &str, event: &str, token: Option<u64>, n: Option<u64>, detail: Option<String>) {
    print(&Line {
        node: node.to_string(),
        event: event.to_string(),
        token,
        n,
        detail,
        late_ms: None,
    });
}

fn print(line: &Line) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

struct Config {
    backend: Backend,
    node: String,
    lease: String,
    schema: String,
    prefix: String,
    ttl: Duration,
}

fn config() -> Result<Config, String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let backend = var("CLUSTER_BACKEND")?;
    let ttl = std::env::var("CLUSTER_TTL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(5000);
    Ok(Config {
        backend: Backend::parse(&backend)
            .ok_or_else(|| format!("CLUSTER_BACKEND={backend}: nats, redis or postgres"))?,
        node: var("CLUSTER_NODE")?,
        lease: std::env::var("CLUSTER_LEASE").unwrap_or_else(|_| "scheduler".into()),
        schema: var("CLUSTER_SCHEMA")?,
        prefix: var("CLUSTER_PREFIX")?,
        ttl: Duration::from_millis(ttl),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "cluster-node: {why}");
            return ExitCode::from(2);
        }
    };
    match start(&config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            emit(&config.node, "error", None, None, Some(error.to_string()));
            ExitCode::FAILURE
        }
    }
}

async fn start(config: &Config) -> Result<(), BoxError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&postgres_url())
        .await?;
    let schema = Schema::new(config.schema.clone())?;
    catga_postgres::migrate(&pool, &schema).await?;
    let table = format!("{}.ticks", config.schema);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (n bigint PRIMARY KEY, node text NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    let schedules = Arc::new(PostgresScheduleStore::new(pool.clone(), &schema));
    let app = Catga::builder()
        .state(Ticks {
            pool: pool.clone(),
            table,
            node: config.node.clone(),
        })
        .handlers(|h| h.is_in("effects"))
        .build()?;
    match config.backend {
        Backend::Nats => {
            let leases = catga_nats::NatsLeaseStore::connect(nats_url())
                .bucket(config.prefix.clone())
                .await?;
            run(leases, app, schedules, config).await
        }
        Backend::Redis => {
            let stores = catga_redis::store::RedisStores::connect(redis_url())
                .prefix(config.prefix.as_str())
                .await?;
            run(stores.leases(), app, schedules, config).await
        }
        Backend::Postgres => {
            let leases = PostgresLeaseStore::new(pool.clone(), &schema);
            run(leases, app, schedules, config).await
        }
    }
}

async fn run<S: LeaseStore>(
    leases: S,
    app: Catga,
    schedules: Arc<PostgresScheduleStore>,
    config: &Config,
) -> Result<(), BoxError> {
    let elected = Leadership::new(leases, config.lease.clone())
        .holder(config.node.clone())
        .ttl(config.ttl)
        .start();
    let scheduler = Scheduler::sharing(app, Arc::clone(&schedules))
        .poll_interval(Duration::from_millis(100))
        .claim_lease(Duration::from_secs(3));
    let running = scheduler.run(&elected);
    let watcher = tokio::spawn(watch(&elected, config.node.clone()));
    let heartbeat = tokio::spawn(heartbeat(&elected, schedules, config.node.clone()));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    emit(&config.node, "ready", None, None, None);
    terminate.recv().await;
    heartbeat.abort();
    running.stop().await;
    elected.stop().await;
    watcher.abort();
    emit(&config.node, "released", None, None, None);
    Ok(())
}

/// Prints each change of leadership.
fn watch(elected: &Elected, node: String) -> impl Future<Output = ()> + use<> {
    let mut leaders = elected.subscribe();
    async move {
        loop {
            let leader = leaders.borrow_and_update().clone();
            match leader {
                Some(leader) => emit(&node, "leading", Some(leader.token().get()), None, None),
                None => emit(&node, "following", None, None, None),
            }
            if leaders.changed().await.is_err() {
                return;
            }
        }
    }
}

/// While leading: check, work 50 ms, write with the token (`fired` of nothing: the write
/// goes through the store's fence and changes nothing else).
fn heartbeat(
    elected: &Elected,
    schedules: Arc<PostgresScheduleStore>,
    node: String,
) -> impl Future<Output = ()> + use<> {
    let mut leaders = elected.subscribe();
    async move {
        loop {
            let leader = leaders.borrow_and_update().clone();
            if let Some(leader) = leader {
                while leader.is_held() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let token = leader.token();
                    match schedules.fired(&[], token).await {
                        Ok(()) => emit(&node, "fenced", Some(token.get()), None, None),
                        Err(e) if is_stale(&e) => {
                            emit(
                                &node,
                                "rejected",
                                Some(token.get()),
                                None,
                                Some(e.to_string()),
                            );
                        }
                        Err(e) => {
                            emit(&node, "error", Some(token.get()), None, Some(e.to_string()))
                        }
                    }
                }
            }
            if leaders.changed().await.is_err() {
                return;
            }
        }
    }
}
