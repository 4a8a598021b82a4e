//! What tracing costs a dispatch: the same in-process `send`, bare; with the `Tracing`
//! behaviour and no subscriber; under the OpenTelemetry layer alone (an exporter that drops
//! the batches); under the whole catga-telemetry subscriber (JSON logs to `io::sink`, OTLP
//! over HTTP to a receiver in this process, on loopback). The allocations per dispatch are
//! counted by `benches/allocations.rs`.
//!
//! ```text
//! cargo bench -p catga-telemetry --bench dispatch
//! ```

mod setup;

use std::hint::black_box;

use catga_telemetry::testkit::OtlpReceiver;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use setup::Add;

const OPS: u64 = 1_000;

fn dispatch(c: &mut Criterion) {
    let rt = setup::runtime();
    let bare = setup::bare();
    let traced = setup::traced();

    let mut group = c.benchmark_group("tracing");
    group.throughput(Throughput::Elements(OPS));
    let mut sends = |name: &str, app: &dyn Fn(u64) -> u64| {
        group.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..OPS {
                    black_box(app(black_box(i)));
                }
            })
        });
    };
    sends("baseline/bare_send", &|i| {
        rt.block_on(bare.send(Add(i, 1))).expect("adds")
    });
    sends("tracing_behaviour/no_subscriber", &|i| {
        rt.block_on(traced.send(Add(i, 1))).expect("adds")
    });
    // Only now: once a subscriber exists, `tracing`'s callsites can no longer tell that
    // nobody listens, and the two above would measure a different thing.
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let full = setup::full_telemetry(&receiver);
    let (otel_only, provider) = setup::otel_layer_only();
    tracing::dispatcher::with_default(&otel_only, || {
        sends("tracing_behaviour/otel_layer_only", &|i| {
            rt.block_on(traced.send(Add(i, 1))).expect("adds")
        });
        sends("baseline/bare_send_under_otel_layer", &|i| {
            rt.block_on(bare.send(Add(i, 1))).expect("adds")
        });
    });
    tracing::dispatcher::with_default(&full.dispatch, || {
        sends("tracing_behaviour/catga_telemetry", &|i| {
            rt.block_on(traced.send(Add(i, 1))).expect("adds")
        });
    });
    group.finish();
    drop(provider.shutdown());
    drop(full.guard.shutdown());
    eprintln!(
        "the loopback receiver got {} spans in {} requests",
        receiver.spans().len(),
        receiver.requests()
    );
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
