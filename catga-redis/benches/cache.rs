//! `RedisCache` hits, in one run: a query answered by the near-cache (no I/O), by Redis (one
//! `MGET` round trip, near-cache off), by catga's in-memory cache, and by its handler with no
//! cache at all. The figure that matters is the ratio of a Redis hit to a near-cache hit
//! (target: 10× or more); the bench prints it at the end, from a second, interleaved
//! measurement of the same paths.
//!
//! Needs a server at `CATGA_REDIS_URL` (default `redis://127.0.0.1:6379`); without one it says
//! so and exits successfully. Run: `cargo bench -p catga-redis --bench cache`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use catga_core::behavior::{CacheBackend, CacheKey, Caching};
use catga_core::prelude::*;
use catga_redis::RedisCache;
use criterion::Criterion;
use tokio::runtime::Runtime;

#[query(output = u64, cache_ttl = "600s")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
}

impl CacheKey for GetPrice {
    fn cache_key(&self) -> String {
        self.sku.to_string()
    }
}

#[handler]
async fn price(q: GetPrice) -> Result<u64, Infallible> {
    Ok(q.sku * 100)
}

fn url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// One way of answering `GetPrice`: a boxed `send`, so the paths share one measuring loop.
type Path = Box<dyn Fn() -> futures::future::BoxFuture<'static, u64>>;

fn path<L: Layer>(app: Catga<L>) -> Path {
    Box::new(move || {
        let app = app.clone();
        Box::pin(async move { app.send(GetPrice { sku: 7 }).await.unwrap_or(0) })
    })
}

/// An application whose only layer is `caching`.
fn cached<B: CacheBackend>(caching: Caching<B>) -> Path {
    path(Catga::builder().layer(caching).build().expect("app"))
}

/// `n` sends of `send`, timed inside one `block_on`.
fn time(rt: &Runtime, send: &Path, n: u64) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        for _ in 0..n {
            black_box(send().await);
        }
        started.elapsed()
    })
}

async fn redis_cache(url: &str, prefix: &str, near: bool) -> RedisCache {
    RedisCache::connect(url)
        .prefix(prefix)
        .near_cache(near)
        .near_ttl(Duration::from_secs(600))
        .await
        .expect("the server answered a moment ago")
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
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        tokio::time::timeout(Duration::from_secs(3), ping).await
    });
    if !matches!(reachable, Ok(Ok(_))) {
        let shown = catga_core::secret::redact_url(&url);
        println!(
            "skipping the cache benches: no redis server answers at {shown} (set CATGA_REDIS_URL)"
        );
        return;
    }
    let prefix = format!("catga-bench:cache:{}", uuid::Uuid::now_v7().simple());
    let paths: Vec<(&str, Path)> = rt.block_on(async {
        let near = redis_cache(&url, &prefix, true).await;
        let far = redis_cache(&url, &prefix, false).await;
        vec![
            (
                "handler, no cache",
                path(Catga::builder().build().expect("app")),
            ),
            ("in-memory cache hit", cached(Caching::new())),
            ("near-cache hit", cached(Caching::with_backend(near))),
            ("Redis hit (round trip)", cached(Caching::with_backend(far))),
        ]
    });
    // Warm: the first send of each cached path stores the reply.
    for (_, send) in &paths {
        time(&rt, send, 10);
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("cache_hit");
    for (name, send) in &paths {
        group.bench_function(*name, |b| b.iter_custom(|iters| time(&rt, send, iters)));
    }
    group.finish();
    c.final_summary();

    // The ratio, from the same process: rounds of every path in turn, so load that comes and
    // goes touches them alike; the median round of each.
    const ROUNDS: usize = 7;
    let per = |name: &str| {
        if name.starts_with("Redis") {
            2_000
        } else {
            200_000
        }
    };
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..ROUNDS {
        for (i, (name, send)) in paths.iter().enumerate() {
            let n = per(name);
            rounds[i].push(time(&rt, send, n).as_nanos() as f64 / n as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rounds.into_iter().map(median).collect();
    for ((name, _), ns) in paths.iter().zip(&medians) {
        println!("{name:<24} {ns:>10.1} ns/op");
    }
    println!(
        "a Redis round-trip hit costs {:.1}x a near-cache hit (target: >= 10x)",
        medians[3] / medians[2]
    );

    rt.block_on(async {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    });
}
