//! The Redis transport against the raw client doing the same work, in one run:
//!
//! - `streams_consume_ack`: 5,000 events stored in advance, consumed and acknowledged by
//!   `app.serve()` with a no-op handler, vs a hand-written `XREADGROUP`/`XACK` loop over the
//!   same entries (same batch size, one `XACK` per batch). Throughput; the ratio is the figure.
//! - `request_reply`: one `send` through catga to a service in the same process, vs a raw
//!   `XADD` + `BLPOP` against a raw responder (`XREADGROUP` → `RPUSH` + `XACK`).
//!
//! Needs a server at `CATGA_REDIS_URL` (default `redis://127.0.0.1:6379`); without one it says
//! so and exits successfully. Run: `cargo bench -p catga-redis --bench redis`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catga_core::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_redis::{RedisTransport, StartFrom};
use criterion::{Criterion, Throughput};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const ENTRIES: u64 = 5_000;
const BATCH: usize = 64;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub n: u64,
}

/// Counts handled events and wakes the bench when the last one is in.
#[derive(Default)]
pub struct Counter {
    handled: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

#[handler]
impl Counter {
    async fn tick(&self, _event: &Tick) -> Result<(), Infallible> {
        let handled = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if handled == self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
        Ok(())
    }
}

#[handler]
async fn echo(cmd: Echo) -> Result<u64, Infallible> {
    Ok(cmd.n)
}

fn url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn raw(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

fn prefix(name: &str) -> String {
    format!("catga-bench:{name}:{}", uuid::Uuid::now_v7().simple())
}

async fn delete_prefix(conn: &mut MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(conn).await;
    }
}

/// Stores `ENTRIES` catga events in `stream`, pipelined.
async fn prefill(conn: &mut MultiplexedConnection, stream: &str) {
    let mut pipe = redis::pipe();
    for n in 0..ENTRIES {
        let envelope = Envelope::wrap(&Tick { n }, &Context::new(), WireFormat::Json).unwrap();
        let cmd = pipe.cmd("XADD").arg(stream).arg("*");
        for (name, value) in envelope.to_headers() {
            cmd.arg(name).arg(value);
        }
        cmd.arg("catga-payload").arg(&envelope.payload).ignore();
    }
    pipe.query_async::<()>(conn).await.unwrap();
}

/// The entry ids in an `XREADGROUP` reply (RESP2), and nothing else: what a minimal consumer
/// looks at.
fn ids(reply: Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            if let Value::Array(mut fields) = entry
                && !fields.is_empty()
                && let Value::BulkString(id) = fields.swap_remove(0)
            {
                out.push(id);
            }
        }
    }
    out
}

async fn raw_consume(conn: &mut MultiplexedConnection, stream: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("raw")
        .arg("0")
        .query_async::<()>(conn)
        .await
        .unwrap();
    let mut acked = 0;
    while acked < ENTRIES {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("c1")
            .arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(conn)
            .await
            .unwrap();
        let ids = ids(reply);
        if ids.is_empty() {
            continue;
        }
        acked += u64::try_from(ids.len()).unwrap_or(0);
        redis::cmd("XACK")
            .arg(stream)
            .arg("raw")
            .arg(ids)
            .query_async::<()>(conn)
            .await
            .unwrap();
    }
}

/// One raw run over fresh entries: the time to consume and acknowledge them all.
async fn raw_once(conn: &mut MultiplexedConnection) -> Duration {
    let prefix = prefix("raw");
    let stream = format!("{prefix}:events:Tick");
    prefill(conn, &stream).await;
    let start = Instant::now();
    raw_consume(conn, &stream).await;
    let took = start.elapsed();
    delete_prefix(conn, &prefix).await;
    took
}

/// One catga run over fresh entries: from `serve()` to a shutdown that returns once every
/// entry is acknowledged.
async fn catga_once(conn: &mut MultiplexedConnection, url: &str) -> Duration {
    let prefix = prefix("catga");
    let redis = RedisTransport::connect(url)
        .prefix(prefix.clone())
        .start_from(StartFrom::Beginning)
        .batch(BATCH)
        .await
        .unwrap();
    prefill(conn, &redis.event_stream("Tick")).await;
    let counter = Arc::new(Counter::default());
    counter.target.store(ENTRIES, Ordering::Release);
    let app = Catga::builder()
        .state_arc(counter.clone())
        .transport(redis)
        .service("catga")
        .handlers(|h| h.name.ends_with("::tick"))
        .build()
        .unwrap();
    let done = counter.done.notified();
    let start = Instant::now();
    let serving = app.serve().await.unwrap();
    done.await;
    serving.shutdown().await;
    let took = start.elapsed();
    delete_prefix(conn, &prefix).await;
    took
}

fn consume(c: &mut Criterion, rt: &Runtime, url: &str) {
    let mut group = c.benchmark_group("streams_consume_ack");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("raw_xreadgroup_xack", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = raw(url).await.unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += raw_once(&mut conn).await;
                }
                total
            })
        });
    });
    group.bench_function("catga_serve", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = raw(url).await.unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += catga_once(&mut conn, url).await;
                }
                total
            })
        });
    });
    group.finish();
    alternating_ratio(rt, url);
}

/// Criterion measures the two one after the other; on a shared machine, load that comes and
/// goes can favour either. Alternating single runs exposes both to the same load, so the
/// ratio of their medians is the steadier figure.
fn alternating_ratio(rt: &Runtime, url: &str) {
    const ROUNDS: usize = 21;
    let (mut raw_runs, mut catga_runs) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let mut conn = raw(url).await.unwrap();
        for _ in 0..ROUNDS {
            raw_runs.push(raw_once(&mut conn).await);
            catga_runs.push(catga_once(&mut conn, url).await);
        }
    });
    let median = |runs: &mut Vec<Duration>| {
        runs.sort_unstable();
        runs[runs.len() / 2]
    };
    let (raw, catga) = (median(&mut raw_runs), median(&mut catga_runs));
    let per_second = |d: Duration| ENTRIES as f64 / d.as_secs_f64();
    println!(
        "streams_consume_ack alternating medians over {ROUNDS} rounds of {ENTRIES} entries: \
         raw {:.1} ms ({:.0} entries/s), catga {:.1} ms ({:.0} entries/s); \
         catga/raw throughput ratio {:.2}",
        raw.as_secs_f64() * 1e3,
        per_second(raw),
        catga.as_secs_f64() * 1e3,
        per_second(catga),
        raw.as_secs_f64() / catga.as_secs_f64(),
    );
}

/// Answers raw requests: `XREADGROUP` → `RPUSH` to the entry's `reply-to` + `XACK`.
async fn raw_responder(url: String, stream: String) {
    let mut conn = raw(&url).await.unwrap();
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("raw")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    loop {
        let reply: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("c1")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await;
        let Ok(Value::Array(streams)) = reply else {
            continue;
        };
        for stream_reply in streams {
            let Value::Array(mut parts) = stream_reply else {
                continue;
            };
            let Some(Value::Array(entries)) = parts.pop() else {
                continue;
            };
            for entry in entries {
                let Value::Array(mut entry) = entry else {
                    continue;
                };
                let (Some(Value::Array(fields)), Some(Value::BulkString(id))) =
                    (entry.pop(), entry.pop())
                else {
                    continue;
                };
                let reply_to = fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == b"reply-to"))
                    .and_then(|kv| match &kv[1] {
                        Value::BulkString(v) => Some(v.clone()),
                        _ => None,
                    });
                let Some(reply_to) = reply_to else { continue };
                let _: redis::RedisResult<()> = redis::pipe()
                    .cmd("RPUSH")
                    .arg(&reply_to)
                    .arg("ok")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&reply_to)
                    .arg(60_000)
                    .ignore()
                    .cmd("XACK")
                    .arg(&stream)
                    .arg("raw")
                    .arg(id)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
            }
        }
    }
}

fn round_trip(c: &mut Criterion, rt: &Runtime, url: &str) {
    let mut group = c.benchmark_group("request_reply");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));

    let prefix_raw = prefix("rr-raw");
    let stream = format!("{prefix_raw}:requests:Echo");
    let responder = rt.spawn(raw_responder(url.to_string(), stream.clone()));
    let (mut conn, mut blocking) = rt.block_on(async {
        // Let the responder create its group first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (raw(url).await.unwrap(), raw(url).await.unwrap())
    });
    let mut n = 0u64;
    group.bench_function("raw_xadd_blpop", |b| {
        b.iter(|| {
            rt.block_on(async {
                n += 1;
                let reply_to = format!("{prefix_raw}:replies:{n}");
                redis::cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("reply-to")
                    .arg(&reply_to)
                    .arg("payload")
                    .arg(n)
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap();
                let popped: Option<(String, String)> = redis::cmd("BLPOP")
                    .arg(&reply_to)
                    .arg(5)
                    .query_async(&mut blocking)
                    .await
                    .unwrap();
                assert!(popped.is_some());
            })
        });
    });
    responder.abort();

    let prefix_catga = prefix("rr-catga");
    let (server, client, serving) = rt.block_on(async {
        let redis = RedisTransport::connect(url)
            .prefix(prefix_catga.clone())
            .await
            .unwrap();
        let server = Catga::builder()
            .transport(redis.clone())
            .service("echo")
            .handlers(|h| h.name.ends_with("::echo"))
            .build()
            .unwrap();
        let serving = server.serve().await.unwrap();
        let client = Catga::builder()
            .transport(redis)
            .service("client")
            .handlers(|_| false)
            .build()
            .unwrap();
        (server, client, serving)
    });
    group.bench_function("catga_send", |b| {
        b.iter(|| {
            rt.block_on(async {
                let n = client.send(Echo { n: 7 }).await.unwrap();
                assert_eq!(n, 7);
            })
        });
    });
    group.finish();
    rt.block_on(async {
        serving.shutdown().await;
        drop(server);
        delete_prefix(&mut conn, &prefix_raw).await;
        delete_prefix(&mut conn, &prefix_catga).await;
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let url = url();
    let reachable = rt.block_on(async {
        let ping = async {
            let mut conn = raw(&url).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        tokio::time::timeout(Duration::from_secs(3), ping).await
    });
    if !matches!(reachable, Ok(Ok(_))) {
        let shown = catga_core::secret::redact_url(&url);
        println!(
            "skipping the redis benches: no redis server answers at {shown} (set CATGA_REDIS_URL)"
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    consume(&mut c, &rt, &url);
    round_trip(&mut c, &rt, &url);
    c.final_summary();
}
