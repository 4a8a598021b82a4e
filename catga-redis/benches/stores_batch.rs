//! Batching in the Redis stores, against one-by-one calls and the raw client, in one run:
//!
//! - `idempotency_claim_16`: 16 new keys claimed with one `claim_many` (one pipeline of 16
//!   `EVALSHA`s, one round trip) vs 16 `claim`s awaited one by one (16 round trips); baselines:
//!   the raw client's 16 `SET NX PX` one by one, and pipelined.
//! - `dead_letters_put_16`: 16 records kept with one `put_many` vs 16 `put`s awaited one by
//!   one; baselines: the raw client's 16 `HSET`s of the same fields one by one, and pipelined.
//!
//! Throughput is in elements (keys claimed, records kept); the ratio of `claim_many` to
//! `one_by_one` in the same run is the figure. What each iteration wrote is deleted after it,
//! outside the timed part.
//!
//! Needs a server at `CATGA_REDIS_URL` (default `redis://127.0.0.1:6379`); without one it says
//! so and exits successfully. Run: `cargo bench -p catga-redis --bench stores_batch`.

use std::time::{Duration, Instant, SystemTime};

use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore, FailureStage};
use catga_core::store::idempotency::{IdempotencyStore, KeyId, ReplyKey};
use catga_redis::store::{RedisDeadLetterStore, RedisIdempotencyStore, RedisStores};
use criterion::{Criterion, Throughput};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Runtime;
use uuid::Uuid;

const BATCH: usize = 16;
const LEASE: Duration = Duration::from_secs(30);
static MESSAGE: &str = "bench.orders.place";

fn url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn raw(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

fn keys() -> Vec<ReplyKey> {
    (0..BATCH)
        .map(|_| ReplyKey {
            message: MESSAGE,
            handler: None,
            id: KeyId::MessageId(Uuid::now_v7()),
        })
        .collect()
}

fn records() -> Vec<DeadLetterRecord> {
    (0..BATCH)
        .map(|_| DeadLetterRecord {
            id: Uuid::now_v7(),
            message: "bench.orders.refund".into(),
            handler: None,
            payload: Some(br#"{"order":42,"cents":1999}"#.to_vec()),
            code: "handler".into(),
            error: "the payment provider is down".into(),
            attempts: 3,
            message_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            headers: vec![("tenant".into(), "acme".into())],
            failed_at: SystemTime::now(),
            stage: FailureStage::Handler,
            source: None,
            raw_headers: None,
        })
        .collect()
}

async fn delete(conn: &mut MultiplexedConnection, keys: Vec<String>) {
    let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(keys).query_async(conn).await;
}

/// Runs `iters` timed rounds of `round` on fresh inputs made by `make`, deleting what each wrote
/// (`written`) outside the timed part.
fn timed<I, F>(
    rt: &Runtime,
    conn: &MultiplexedConnection,
    iters: u64,
    make: impl Fn() -> I,
    written: impl Fn(&I) -> Vec<String>,
    round: impl Fn(I) -> F,
) -> Duration
where
    F: Future<Output = ()>,
{
    rt.block_on(async {
        let mut conn = conn.clone();
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let input = make();
            let keys = written(&input);
            let start = Instant::now();
            round(input).await;
            total += start.elapsed();
            delete(&mut conn, keys).await;
        }
        total
    })
}

fn claims(
    c: &mut Criterion,
    rt: &Runtime,
    store: &RedisIdempotencyStore,
    conn: &MultiplexedConnection,
) {
    let written = |keys: &Vec<ReplyKey>| keys.iter().map(|k| store.key_of(k)).collect();
    let mut group = c.benchmark_group("idempotency_claim_16");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("raw_set_nx_one_by_one", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, keys, written, |keys| {
                let mut conn = conn.clone();
                async move {
                    for key in &keys {
                        let _: Option<String> = redis::cmd("SET")
                            .arg(store.key_of(key))
                            .arg("H")
                            .arg("NX")
                            .arg("PX")
                            .arg(30_000)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                    }
                }
            })
        });
    });
    group.bench_function("raw_set_nx_pipelined", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, keys, written, |keys| {
                let mut conn = conn.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for key in &keys {
                        pipe.cmd("SET")
                            .arg(store.key_of(key))
                            .arg("H")
                            .arg("NX")
                            .arg("PX")
                            .arg(30_000);
                    }
                    let _: Vec<Option<String>> = pipe.query_async(&mut conn).await.unwrap();
                }
            })
        });
    });
    group.bench_function("one_by_one", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, keys, written, |keys| async move {
                for key in &keys {
                    store.claim(key, LEASE).await.unwrap();
                }
            })
        });
    });
    group.bench_function("claim_many", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, keys, written, |keys| async move {
                store.claim_many(&keys, LEASE).await.unwrap();
            })
        });
    });
    group.finish();
}

fn puts(
    c: &mut Criterion,
    rt: &Runtime,
    store: &RedisDeadLetterStore,
    conn: &MultiplexedConnection,
) {
    let tag = store.record_key(Uuid::nil());
    let tag = tag.split(":record:").next().unwrap_or_default().to_string();
    let written = |records: &Vec<DeadLetterRecord>| {
        let mut keys: Vec<String> = records.iter().map(|r| store.record_key(r.id)).collect();
        keys.extend(["ids", "by_time", "by_message"].map(|index| format!("{tag}:{index}")));
        keys
    };
    let hset = |record: &DeadLetterRecord| {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(store.record_key(record.id))
            .arg("id")
            .arg(record.id.to_string())
            .arg("message")
            .arg(&record.message)
            .arg("payload")
            .arg(record.payload.as_deref().unwrap_or_default())
            .arg("code")
            .arg(&record.code)
            .arg("error")
            .arg(&record.error)
            .arg("attempts")
            .arg(record.attempts)
            .arg("message_id")
            .arg(record.message_id.to_string())
            .arg("correlation_id")
            .arg(record.correlation_id.to_string())
            .arg("failed_at")
            .arg(1)
            .arg("stage")
            .arg("handler")
            .arg("headers")
            .arg(1)
            .arg("header.0.name")
            .arg("tenant")
            .arg("header.0.value")
            .arg("acme");
        cmd
    };
    let mut group = c.benchmark_group("dead_letters_put_16");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("raw_hset_one_by_one", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, records, written, |records| {
                let mut conn = conn.clone();
                async move {
                    for record in &records {
                        let _: i64 = hset(record).query_async(&mut conn).await.unwrap();
                    }
                }
            })
        });
    });
    group.bench_function("raw_hset_pipelined", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, records, written, |records| {
                let mut conn = conn.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for record in &records {
                        pipe.add_command(hset(record));
                    }
                    let _: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
                }
            })
        });
    });
    group.bench_function("one_by_one", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, records, written, |records| async move {
                for record in records {
                    store.put(record).await.unwrap();
                }
            })
        });
    });
    group.bench_function("put_many", |b| {
        b.iter_custom(|iters| {
            timed(rt, conn, iters, records, written, |records| async move {
                store.put_many(&records).await.unwrap();
            })
        });
    });
    group.finish();
}

/// Alternating blocks measured for each printed speed-up, and iterations per block.
const BLOCKS: usize = 21;
const PER_BLOCK: u64 = 20;

/// How many times faster `batch` is than `single` on the same inputs: blocks of each, in
/// turn (and which goes first alternates), so a change in the machine's load affects both
/// alike; the median of the blocks' ratios.
fn speedup<I, F, G>(
    rt: &Runtime,
    conn: &MultiplexedConnection,
    make: impl Fn() -> I,
    written: impl Fn(&I) -> Vec<String>,
    single: impl Fn(I) -> F,
    batch: impl Fn(I) -> G,
) -> f64
where
    F: Future<Output = ()>,
    G: Future<Output = ()>,
{
    let mut ratios: Vec<f64> = (0..BLOCKS)
        .map(|round| {
            let single_time = || timed(rt, conn, PER_BLOCK, &make, &written, &single);
            let batch_time = || timed(rt, conn, PER_BLOCK, &make, &written, &batch);
            let (one, many) = if round % 2 == 0 {
                let one = single_time();
                (one, batch_time())
            } else {
                let many = batch_time();
                (single_time(), many)
            };
            one.as_secs_f64() / many.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// How soon a dispatch waiting in one instance (`b`, polling only every 300 s) is woken by a
/// completion in another (`a`): from the start of `complete` to the waiter's return. Baseline:
/// one `claim`, one round trip.
fn wakeups(
    c: &mut Criterion,
    rt: &Runtime,
    a: &RedisIdempotencyStore,
    b: &RedisIdempotencyStore,
    conn: &MultiplexedConnection,
) {
    let written = |keys: &Vec<ReplyKey>| keys.iter().map(|k| a.key_of(k)).collect();
    let one = || {
        let mut keys = keys();
        keys.truncate(1);
        keys
    };
    let mut group = c.benchmark_group("idempotency_wake");
    group.bench_function("claim_round_trip", |bench| {
        bench.iter_custom(|iters| {
            timed(rt, conn, iters, one, written, |keys| async move {
                a.claim(&keys[0], LEASE).await.unwrap();
            })
        });
    });
    group.bench_function("complete_to_waiter_woken", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut conn = conn.clone();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let key = one().remove(0);
                    let name = a.key_of(&key);
                    a.claim(&key, LEASE).await.unwrap();
                    let waiter = tokio::spawn({
                        let (b, key) = (b.clone(), key.clone());
                        async move {
                            b.wait(&key, Duration::from_secs(60)).await.unwrap();
                            Instant::now()
                        }
                    });
                    // Waiting once its look marked the key waited for (`W`).
                    loop {
                        let value: Option<String> = redis::cmd("GET")
                            .arg(&name)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        if value.as_deref() == Some("W") {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    let start = Instant::now();
                    a.complete(&key, b"{}", LEASE).await.unwrap();
                    let woken = waiter.await.unwrap();
                    total += woken.saturating_duration_since(start);
                    delete(&mut conn, vec![name]).await;
                }
                total
            })
        });
    });
    group.finish();
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
            "skipping the store batch benches: no redis server answers at {shown} (set CATGA_REDIS_URL)"
        );
        return;
    }
    let prefix = format!("catga-bench:stores:{}", Uuid::now_v7().simple());
    let (stores, conn) = rt.block_on(async {
        let stores = RedisStores::connect(url.as_str())
            .prefix(prefix.as_str())
            .await
            .expect("the server answered a moment ago");
        (stores, raw(&url).await.expect("a raw connection"))
    });
    let idempotency = stores.idempotency();
    let dead_letters = stores.dead_letters();
    // Another instance: its own connection and subscriber; it polls only every 300 s.
    let waiter = rt.block_on(async {
        let other = RedisStores::connect(url.as_str())
            .prefix(prefix.as_str())
            .await
            .expect("the server answered a moment ago")
            .idempotency()
            .poll_interval(Duration::from_secs(300))
            .expect("a valid poll interval");
        idempotency.load_scripts().await.expect("load scripts");
        dead_letters.load_scripts().await.expect("load scripts");
        // Opens its subscriber.
        other.wait(&keys()[0], LEASE).await.expect("wait");
        other
    });
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    claims(&mut c, &rt, &idempotency, &conn);
    puts(&mut c, &rt, &dead_letters, &conn);
    wakeups(&mut c, &rt, &idempotency, &waiter, &conn);
    c.final_summary();

    let claims = speedup(
        &rt,
        &conn,
        keys,
        |keys: &Vec<ReplyKey>| keys.iter().map(|k| idempotency.key_of(k)).collect(),
        |keys| {
            let store = &idempotency;
            async move {
                for key in &keys {
                    store.claim(key, LEASE).await.unwrap();
                }
            }
        },
        |keys| {
            let store = &idempotency;
            async move {
                store.claim_many(&keys, LEASE).await.unwrap();
            }
        },
    );
    let tag = dead_letters.record_key(Uuid::nil());
    let tag = tag.split(":record:").next().unwrap_or_default().to_string();
    let puts = speedup(
        &rt,
        &conn,
        records,
        |records: &Vec<DeadLetterRecord>| {
            let mut keys: Vec<String> = records
                .iter()
                .map(|r| dead_letters.record_key(r.id))
                .collect();
            keys.extend(["ids", "by_time", "by_message"].map(|index| format!("{tag}:{index}")));
            keys
        },
        |records| {
            let store = &dead_letters;
            async move {
                for record in records {
                    store.put(record).await.unwrap();
                }
            }
        },
        |records| {
            let store = &dead_letters;
            async move {
                store.put_many(&records).await.unwrap();
            }
        },
    );
    println!(
        "\nbatch of {BATCH} vs {BATCH} calls awaited one by one (median of {BLOCKS} alternating blocks of {PER_BLOCK}):"
    );
    println!("  idempotency_claim_16: claim_many is {claims:.1}x the one-by-one rate");
    println!("  dead_letters_put_16: put_many is {puts:.1}x the one-by-one rate");
    // Nothing should be left; make sure of it.
    rt.block_on(async {
        let mut conn = conn.clone();
        for pattern in [format!("{prefix}:*"), format!("{{{prefix}:*")] {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                delete(&mut conn, keys).await;
            }
        }
        let _ = dead_letters.count().await;
    });
}
