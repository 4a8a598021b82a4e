//! The outbox relay against a hand-written relay loop, and the outbox's latency and cost,
//! measured in one run on the local Postgres and NATS JetStream.
//!
//! ```text
//! cargo bench -p catga-postgres --bench relay
//! ```
//!
//! * **Throughput.** `ROWS` committed events in the outbox, relayed to JetStream with batches
//!   of `BATCH`: catga's `OutboxRelay::relay_once` until empty, against a raw loop doing the
//!   same claim (`FOR UPDATE SKIP LOCKED`), publish (each awaiting its JetStream ack, a batch
//!   in flight at once) and delete per batch, in one transaction per batch. Rounds alternate
//!   (raw, catga, raw, …); the ratio is the median of per-round ratios.
//! * **Commit → broker ack.** One command at a time through the `Outbox` behaviour with a
//!   started relay: the time from the command's commit (its `send` returning) to JetStream's
//!   acknowledgement of its event (seen by a wrapper around the transport), in an HDR
//!   histogram.
//! * **Cost per command.** The same handler writing the same business row in a transaction of
//!   its own, against writing it through the outbox's transaction and publishing an event.
//!
//! Needs Postgres at `CATGA_POSTGRES_URL` and NATS with JetStream at `CATGA_NATS_URL`
//! (the local ones by default); without them it says why and exits successfully.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use catga_core::envelope::Envelope;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::transport::{Inbound, Reply, ServePlan, Serving, Transport, TransportError};
use catga_nats::NatsTransport;
use catga_postgres::{Outbox, Schema, Tx, migrate};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

const ROWS: i64 = 10_000;
const BATCH: usize = 256;
const ROUNDS: usize = 5;
const LATENCY_SAMPLES: usize = 2_000;
const COST_BLOCK: usize = 200;
const COST_BLOCKS: usize = 11;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Place {
    pub n: u64,
}

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlacePlain {
    pub n: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    pub n: u64,
}

pub mod bench {
    use super::*;

    /// Writes the business row in the outbox's transaction and publishes an event.
    #[handler]
    async fn place(cmd: Place, ctx: &Context) -> Result<(), BoxError> {
        let tx = Tx::current()?;
        let mut conn = tx.lock().await?;
        sqlx::query("INSERT INTO orders (n) VALUES ($1)")
            .bind(i64::try_from(cmd.n)?)
            .execute(&mut *conn)
            .await?;
        ctx.publish(Placed { n: cmd.n })?;
        Ok(())
    }

    /// The same row in a transaction of its own, no event: the baseline.
    #[handler]
    async fn place_plain(cmd: PlacePlain, pool: &PgPool) -> Result<(), BoxError> {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO orders (n) VALUES ($1)")
            .bind(i64::try_from(cmd.n)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A transport that notes when JetStream acknowledged each `Placed` event, by its `n`.
struct Timed {
    inner: NatsTransport,
    acked: Arc<Mutex<HashMap<u64, Instant>>>,
    /// Off during the throughput rounds: noting acks costs a decode and a lock per event.
    on: Arc<std::sync::atomic::AtomicBool>,
}

impl Transport for Timed {
    fn name(&self) -> &'static str {
        "nats"
    }
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        if !self.on.load(std::sync::atomic::Ordering::Relaxed) {
            return self.inner.publish(envelope);
        }
        let n = serde_json::from_slice::<Placed>(&envelope.payload)
            .map(|p| p.n)
            .ok();
        Box::pin(async move {
            self.inner.publish(envelope).await?;
            if let (Some(n), Ok(mut acked)) = (n, self.acked.lock()) {
                acked.insert(n, Instant::now());
            }
            Ok(())
        })
    }
    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        self.inner.request(envelope, timeout)
    }
    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        self.inner.serve(plan, inbound)
    }
}

fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Fills the outbox of `schema` with `ROWS` events, one ordering key each (as independent
/// commands would), the same payload for raw and catga.
async fn fill(pool: &PgPool, schema: &Schema) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.outbox (message_id, ordering_key, name, kind, correlation_id, timestamp_ms, format, payload) \
         SELECT gen_random_uuid(), g::text, 'Placed', 'event', gen_random_uuid(), 0, 'application/json', \
                convert_to('{{\"n\":' || g || '}}', 'UTF8') \
         FROM generate_series(1, $1) AS g"
    )))
    .bind(ROWS)
    .execute(pool)
    .await
    .expect("fill the outbox");
}

/// The hand-written relay: claim a batch, publish it all awaiting acks, delete, commit.
async fn raw_relay(
    pool: &PgPool,
    schema: &Schema,
    js: &jetstream::Context,
    subject: &str,
) -> usize {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await.expect("begin");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT position, message_id, payload FROM {schema}.outbox ORDER BY position LIMIT $1 FOR UPDATE SKIP LOCKED"
        )))
        .bind(BATCH as i64)
        .fetch_all(&mut *tx)
        .await
        .expect("claim");
        if rows.is_empty() {
            return total;
        }
        let acks = rows.iter().map(|row| {
            let id: uuid::Uuid = row.get("message_id");
            let payload: Vec<u8> = row.get("payload");
            let message = PublishMessage::build()
                .message_id(id.to_string())
                .payload(payload.into());
            async move {
                js.send_publish(subject.to_string(), message)
                    .await
                    .expect("publish")
                    .await
                    .expect("ack")
            }
        });
        futures::future::join_all(acks).await;
        let positions: Vec<i64> = rows.iter().map(|r| r.get("position")).collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {schema}.outbox WHERE position = ANY($1)"
        )))
        .bind(&positions)
        .execute(&mut *tx)
        .await
        .expect("delete");
        tx.commit().await.expect("commit");
        total += positions.len();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run());
}

async fn run() {
    let pg_url = url(
        "CATGA_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let nats_url = url("CATGA_NATS_URL", "nats://127.0.0.1:4222");
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[22..];
    let schema = Schema::new(format!("bench_relay_{suffix}")).expect("valid");
    let search_path = format!("SET search_path TO {schema}, public");
    let pool = match PgPoolOptions::new()
        .max_connections(8)
        .after_connect(move |conn, _| {
            let sql = search_path.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql)).await?;
                Ok(())
            })
        })
        .connect(&pg_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("skipping the relay benchmark: Postgres unreachable at {pg_url}: {e}");
            return;
        }
    };
    let prefix = format!("benchrelay{suffix}");
    let transport = match NatsTransport::connect(&nats_url)
        .prefix(&prefix)
        .stream(format!("{prefix}-events"))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipping the relay benchmark: NATS unreachable at {nats_url}: {e}");
            return;
        }
    };
    migrate(&pool, &schema).await.expect("migrate");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.orders (n bigint)"
    )))
    .execute(&pool)
    .await
    .expect("orders table");
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let timing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outbox = Outbox::new(pool.clone(), &schema);
    let relay = outbox.relay().batch(BATCH).expect("valid batch");
    let app = Catga::builder()
        .state(pool.clone())
        .handlers(|h| h.is_in("bench"))
        .transport(Timed {
            inner: transport,
            acked: Arc::clone(&acked),
            on: Arc::clone(&timing),
        })
        .layer(outbox)
        .build()
        .expect("build");
    let js = jetstream::new(async_nats::connect(&nats_url).await.expect("connect"));
    let raw_subject = format!("{prefix}.events.raw");

    // Throughput: raw, catga with one round at a time (the same work as the raw loop, in
    // the same order), catga as a started relay runs (two rounds in flight), in turn.
    let sequential = relay.clone().rounds_in_flight(1).expect("valid");
    let mut samples: Vec<(f64, f64, f64)> = Vec::new();
    for round in 0..ROUNDS {
        let mut timed = Vec::new();
        for side in 0..3 {
            let side = (side + round) % 3;
            fill(&pool, &schema).await;
            let start = Instant::now();
            let n = match side {
                0 => raw_relay(&pool, &schema, &js, &raw_subject).await,
                1 => sequential.relay_backlog(&app).await.expect("relayed"),
                _ => relay.relay_backlog(&app).await.expect("relayed"),
            };
            assert_eq!(n as i64, ROWS);
            timed.push((side, start.elapsed().as_secs_f64()));
        }
        timed.sort_by_key(|(side, _)| *side);
        samples.push((timed[0].1, timed[1].1, timed[2].1));
    }
    let median = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |secs: f64| ROWS as f64 / secs;
    println!(
        "relay throughput, {ROWS} events, batch {BATCH}, median of {ROUNDS} rounds: raw loop {:.0} events/s; \
         catga one round at a time {:.0} events/s ({:.2}x raw); catga two rounds in flight (default) {:.0} events/s ({:.2}x raw)",
        rate(median(&|s| s.0)),
        rate(median(&|s| s.1)),
        median(&|s| s.0 / s.1),
        rate(median(&|s| s.2)),
        median(&|s| s.0 / s.2),
    );

    // Commit -> broker ack, with the relay running.
    timing.store(true, std::sync::atomic::Ordering::Relaxed);
    let running = relay
        .clone()
        .start(app.clone())
        .await
        .expect("relay starts");
    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut to_ack, mut to_commit, mut after_commit) = (histogram(), histogram(), histogram());
    for n in 0..LATENCY_SAMPLES as u64 {
        let sent = Instant::now();
        app.send(Place { n }).await.expect("command");
        let committed = Instant::now();
        let acked_at = loop {
            let seen = acked.lock().ok().and_then(|a| a.get(&n).copied());
            if let Some(at) = seen {
                break at;
            }
            tokio::time::sleep(Duration::from_micros(20)).await;
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        to_ack.record(micros(acked_at - sent)).expect("record");
        to_commit.record(micros(committed - sent)).expect("record");
        // The relay may have the ack before `send` has returned to the caller (then 0).
        after_commit
            .record(micros(acked_at.saturating_duration_since(committed)))
            .expect("record");
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency, {LATENCY_SAMPLES} commands one at a time: send -> JetStream ack p50 {:.2} ms, p99 {:.2} ms; \
         send -> commit returned p50 {:.2} ms, p99 {:.2} ms; ack later than the commit returned p50 {:.2} ms, p99 {:.2} ms",
        ms(&to_ack, 0.5),
        ms(&to_ack, 0.99),
        ms(&to_commit, 0.5),
        ms(&to_commit, 0.99),
        ms(&after_commit, 0.5),
        ms(&after_commit, 0.99),
    );

    // Cost per command, alternating blocks.
    let mut cost = Vec::new();
    let mut next = 1_000_000u64;
    for block in 0..COST_BLOCKS {
        let mut timed = async |outboxed: bool| {
            let start = Instant::now();
            for _ in 0..COST_BLOCK {
                next += 1;
                if outboxed {
                    app.send(Place { n: next }).await.expect("outboxed command");
                } else {
                    app.send(PlacePlain { n: next })
                        .await
                        .expect("plain command");
                }
            }
            start.elapsed().as_secs_f64() / COST_BLOCK as f64
        };
        let (plain, outboxed) = if block % 2 == 0 {
            let p = timed(false).await;
            (p, timed(true).await)
        } else {
            let o = timed(true).await;
            (timed(false).await, o)
        };
        cost.push((outboxed / plain, plain, outboxed));
    }
    cost.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, plain, outboxed) = cost[COST_BLOCKS / 2];
    println!(
        "cost per command: own transaction, no event {:.0} us; through the outbox with one event {:.0} us ({ratio:.2}x, median of {COST_BLOCKS} alternating blocks of {COST_BLOCK})",
        plain * 1e6,
        outboxed * 1e6
    );
    running.shutdown().await;
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
    {
        eprintln!("could not drop the benchmark's schema {schema}: {e}");
    }
}
