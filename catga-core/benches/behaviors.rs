//! What each resilience behaviour adds to a dispatch on its happy path, measured against the
//! bare `send` (and a plain `async fn`) in the same run.
//!
//! ```text
//! cargo bench -p catga-core --bench behaviors
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use catga_core::behavior::{CircuitBreaker, ConcurrencyLimit, Idempotency, RateLimit, Trip};
use catga_core::policy::Rate;
use catga_core::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const OPS: u64 = 1_000;

#[command(output = u64)]
#[derive(Clone, Serialize, Deserialize)]
pub struct Add(pub u64, pub u64);

#[handler]
async fn add(cmd: Add) -> Result<u64, Infallible> {
    Ok(cmd.0 + cmd.1)
}

#[inline(never)]
async fn plain(a: u64, b: u64) -> Result<u64, Infallible> {
    Ok(a + b)
}

fn behaviors(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = Catga::builder().build().unwrap();
    let breaker = Catga::builder()
        .layer(CircuitBreaker::new(Trip::ConsecutiveFailures(5)))
        .build()
        .unwrap();
    let limited = Catga::builder()
        // A budget the benchmark never exhausts: the happy path of the limiter.
        .layer(RateLimit::global(Rate::per_second(u32::MAX)).burst(u32::MAX))
        .build()
        .unwrap();
    let bulkhead = Catga::builder()
        .layer(ConcurrencyLimit::per_message(1024))
        .build()
        .unwrap();
    let idempotent = Catga::builder()
        .layer(Idempotency::default())
        .build()
        .unwrap();
    // Every benchmarked send repeats this message id: each is an idempotency hit.
    let id = Uuid::now_v7();
    rt.block_on(idempotent.send_with(Add(1, 2), Context::new().with_message_id(id)))
        .unwrap();

    let mut group = c.benchmark_group("behaviours");
    group.throughput(Throughput::Elements(OPS));
    group.bench_function("baseline/plain_async_fn", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(plain(black_box(i), 1).await.unwrap());
                }
            })
        })
    });
    group.bench_function("baseline/bare_send", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(bare.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("baseline/bare_send_with_message_id", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    let ctx = Context::new().with_message_id(id);
                    black_box(bare.send_with(Add(black_box(i), 1), ctx).await.unwrap());
                }
            })
        })
    });
    group.bench_function("send/circuit_breaker_closed", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(breaker.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("send/rate_limit_with_permits", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(limited.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("send/concurrency_limit_free_slot", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(bulkhead.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("send/idempotency_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    let ctx = Context::new().with_message_id(id);
                    black_box(
                        idempotent
                            .send_with(Add(black_box(i), 1), ctx)
                            .await
                            .unwrap(),
                    );
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, behaviors);
criterion_main!(benches);
