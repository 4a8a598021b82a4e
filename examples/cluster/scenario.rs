//! The failover scenarios, as the test and the figures program run them: each starts three
//! nodes on a fresh schema (and bucket or key prefix), makes the leader go away one way, and
//! measures how long until another one does fenced work.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use catga_core::codec::WireFormat;
use catga_core::context::Context;
use catga_core::envelope::Envelope;
use catga_core::store::schedule::{ScheduleStore, Scheduled};
use catga_postgres::{PostgresScheduleStore, Schema};
use sqlx::PgPool;

use crate::{Backend, Cluster, postgres_url};

/// How long a scenario waits for anything before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Why a scenario could not run or found something wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Setting up or cleaning up failed.
    #[error("{0}")]
    Setup(String),
    /// What was expected did not happen.
    #[error("{0}")]
    Failed(String),
}

fn setup(e: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Setup(e.to_string())
}

/// A fresh place for one run: a schema (schedule store, ticks, and the Postgres lease) and a
/// prefix (the Redis keys, the NATS bucket).
pub struct Place {
    /// The backend under test.
    pub backend: Backend,
    /// The schema's name.
    pub schema: String,
    /// The Redis prefix or NATS bucket.
    pub prefix: String,
    pool: PgPool,
}

impl Place {
    /// Creates the schema (migrated) and the ticks table.
    ///
    /// # Errors
    /// When PostgreSQL cannot be reached.
    pub async fn new(backend: Backend) -> Result<Place, ScenarioError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let schema = format!("failover_{}", &id[id.len() - 12..]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&postgres_url())
            .await
            .map_err(setup)?;
        let checked = Schema::new(schema.clone()).map_err(setup)?;
        catga_postgres::migrate(&pool, &checked)
            .await
            .map_err(setup)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {schema}.ticks (n bigint PRIMARY KEY, node text NOT NULL)"
        )))
        .execute(&pool)
        .await
        .map_err(setup)?;
        Ok(Place {
            backend,
            prefix: format!("failover_{}", &id[id.len() - 12..]),
            schema,
            pool,
        })
    }

    /// The nodes' environment, with a lease TTL of `ttl`.
    pub fn env(&self, ttl: Duration) -> Vec<(String, String)> {
        vec![
            ("CLUSTER_BACKEND".into(), self.backend.name().into()),
            ("CLUSTER_SCHEMA".into(), self.schema.clone()),
            ("CLUSTER_PREFIX".into(), self.prefix.clone()),
            ("CLUSTER_TTL_MS".into(), ttl.as_millis().to_string()),
        ]
    }

    /// Schedules ticks `0..count`, one every `every` from now.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn schedule_ticks(&self, count: u64, every: Duration) -> Result<(), ScenarioError> {
        let store = PostgresScheduleStore::new(
            self.pool.clone(),
            &Schema::new(self.schema.clone()).map_err(setup)?,
        );
        let start = SystemTime::now();
        for n in 0..count {
            let due = start + every * u32::try_from(n).unwrap_or(u32::MAX);
            let due_ms = due
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let tick = crate::Tick { n, due_ms };
            let envelope =
                Envelope::wrap(&tick, &Context::new(), WireFormat::Json).map_err(setup)?;
            store
                .schedule(&Scheduled { due, envelope })
                .await
                .map_err(setup)?;
        }
        Ok(())
    }

    /// How many distinct ticks have their row.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    pub async fn ticks(&self) -> Result<u64, ScenarioError> {
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.ticks",
            self.schema
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(setup)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Drops the schema, and the NATS bucket or Redis keys of the prefix.
    pub async fn clean(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await;
        match self.backend {
            Backend::Nats => {
                if let Ok(client) = async_nats_client().await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(format!("KV_{}", self.prefix)).await;
                }
            }
            Backend::Redis => {
                if let Ok(client) = catga_redis::redis::Client::open(crate::redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = catga_redis::redis::cmd("KEYS")
                        .arg(format!("*{}*", self.prefix))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    for key in keys {
                        let _: Result<(), _> = catga_redis::redis::cmd("DEL")
                            .arg(key)
                            .query_async(&mut conn)
                            .await;
                    }
                }
            }
            Backend::Postgres => {}
        }
    }
}

async fn async_nats_client() -> Result<async_nats::Client, ScenarioError> {
    async_nats::connect(crate::nats_url()).await.map_err(setup)
}

/// How the leader goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// `SIGKILL`: the lease runs out.
    Killed,
    /// `SIGTERM`: the node releases the lease.
    Stopped,
    /// `SIGSTOP` past the lease, then `SIGCONT`.
    Paused,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// From the departure to the first fenced write of another node.
    pub takeover: Duration,
    /// For [`Departure::Paused`]: whether the old leader's write after `SIGCONT` was
    /// refused for its stale token (it may instead find it no longer leads before writing).
    pub stale_write_refused: bool,
}

/// Starts three nodes of `binary` in `place`, waits for a leader doing fenced work, makes it
/// depart, and measures until another node does fenced work with a greater token. Checks that
/// no write of the old token is accepted after the new leader's first (no split brain).
/// Returns the outcome and the nodes, still running (dropping them stops them).
///
/// # Errors
/// [`ScenarioError::Failed`] when no leader appears, none takes over, or the old leader's
/// write is accepted after the new one's.
pub fn run(
    binary: &Path,
    place: &Place,
    ttl: Duration,
    departure: Departure,
) -> Result<(Outcome, Cluster), ScenarioError> {
    let failed = |why: String| ScenarioError::Failed(why);
    let mut cluster = Cluster::start(binary, &place.env(ttl), 3).map_err(setup)?;
    let started = Instant::now();
    let (leader, token) = cluster
        .leader(started, PATIENCE)
        .ok_or_else(|| failed("no node led".into()))?;
    let name = cluster.name(leader).to_string();
    cluster
        .wait_for(started, PATIENCE, |l| l.event == "fenced" && l.node == name)
        .ok_or_else(|| failed(format!("{name} led but made no fenced write")))?;
    let signal = match departure {
        Departure::Killed => "KILL",
        Departure::Stopped => "TERM",
        Departure::Paused => "STOP",
    };
    let departed = Instant::now();
    cluster.signal(leader, signal).map_err(setup)?;
    let next = cluster
        .wait_for(departed, PATIENCE, |l| {
            l.event == "fenced" && l.node != name && l.token.is_some_and(|t| t > token)
        })
        .ok_or_else(|| failed(format!("no node took over from {name} (token {token})")))?;
    let takeover = next.at - departed;
    let mut stale_write_refused = false;
    if departure == Departure::Paused {
        cluster.signal(leader, "CONT").map_err(setup)?;
        // Its step-down (or its refused write) comes within a renew interval; wait two.
        std::thread::sleep(ttl * 2 / 3 + Duration::from_millis(500));
        let after: Vec<_> = cluster
            .lines()
            .into_iter()
            .filter(|s| s.at >= next.at && s.line.node == name)
            .collect();
        if let Some(split) = after
            .iter()
            .find(|s| s.line.event == "fenced" && s.line.token == Some(token))
        {
            return Err(failed(format!(
                "split brain: {name}'s write with token {token} was accepted after the new leader's: {:?}",
                split.line
            )));
        }
        stale_write_refused = after.iter().any(|s| s.line.event == "rejected");
        if !after.iter().any(|s| s.line.event == "following") {
            return Err(failed(format!(
                "{name} did not step down after SIGCONT: {:?}",
                after.iter().map(|s| &s.line).collect::<Vec<_>>()
            )));
        }
    }
    if departure == Departure::Stopped && !cluster.wait_exit(leader, PATIENCE) {
        return Err(failed(format!("{name} did not exit on SIGTERM")));
    }
    Ok((
        Outcome {
            takeover,
            stale_write_refused,
        },
        cluster,
    ))
}
