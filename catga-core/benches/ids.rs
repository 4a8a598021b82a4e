//! Snowflake id generation cost, as a ratio to the baselines measured in the same run: a plain
//! `AtomicU64::fetch_add` counter (the floor for any shared unique counter) and one
//! `SystemTime::now()` call (the wall-clock reading a single `next_id` must make).
//!
//! Every iteration makes 1,024 ids (or 1,024 baseline operations); criterion's time per
//! iteration divided by 1,024 is the cost per id.
//!
//! The generators measured without a ceiling use a 40 / 1 / 22 layout (4,194,304 ids per
//! millisecond), so the per-millisecond ceiling never binds and the figure is the generator's
//! own cost. The Twitter-layout line (4,096 ids per millisecond) shows the ceiling instead:
//! asked for ids faster than 4,096 per ms, the generator waits, so it costs at least 244 ns/id.
//!
//! ```text
//! cargo bench -p catga-core --bench ids -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use catga_core::id::{Clock, SnowflakeGenerator, SnowflakeId, SnowflakeLayout, SystemClock};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const IDS: usize = 1_024;

fn wide_generator() -> SnowflakeGenerator {
    let wide = SnowflakeLayout::new(40, 1, 22).unwrap_or_else(|e| panic!("{e}"));
    SnowflakeGenerator::builder()
        .layout(wide)
        .worker(1)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(IDS as u64));

    let counter = AtomicU64::new(0);
    group.bench_function("baseline: AtomicU64::fetch_add", |b| {
        b.iter(|| {
            for _ in 0..IDS {
                black_box(counter.fetch_add(1, Ordering::Relaxed));
            }
        })
    });
    group.bench_function("baseline: SystemTime::now", |b| {
        b.iter(|| {
            for _ in 0..IDS {
                black_box(SystemTime::now());
            }
        })
    });
    group.bench_function("SystemClock::unix_millis", |b| {
        b.iter(|| {
            for _ in 0..IDS {
                black_box(SystemClock.unix_millis());
            }
        })
    });

    let generator = wide_generator();
    group.bench_function("next_id", |b| {
        b.iter(|| {
            for _ in 0..IDS {
                black_box(generator.next_id().unwrap_or_else(|e| panic!("{e}")));
            }
        })
    });

    let generator = wide_generator();
    let mut buffer = vec![SnowflakeId::from_u64(0).unwrap_or_else(|e| panic!("{e}")); IDS];
    group.bench_function("fill (batch of 1,024)", |b| {
        b.iter(|| {
            generator
                .fill(black_box(&mut buffer))
                .unwrap_or_else(|e| panic!("{e}"));
        })
    });

    let generator = wide_generator();
    group.bench_function("next_ids (batch of 1,024, allocating)", |b| {
        b.iter(|| black_box(generator.next_ids(IDS).unwrap_or_else(|e| panic!("{e}"))))
    });

    let twitter = SnowflakeGenerator::new(1).unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("next_id, Twitter layout (at the 4,096/ms ceiling)", |b| {
        b.iter(|| {
            for _ in 0..IDS {
                black_box(twitter.next_id().unwrap_or_else(|e| panic!("{e}")));
            }
        })
    });

    group.finish();
}

criterion_group!(benches, ids);
criterion_main!(benches);
