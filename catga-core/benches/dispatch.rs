//! Dispatch cost as a ratio to a plain `async fn` call, measured in one run.
//!
//! Every iteration performs 1,000 operations inside one `block_on` of a current-thread Tokio
//! runtime (as DESIGN §7's peer figures were measured); criterion's time per iteration divided
//! by 1,000 is the cost per operation.
//!
//! ```text
//! cargo bench -p catga-core --bench dispatch
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use catga_core::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mediator::{AsyncMediator, DefaultAsyncMediator};

const OPS: u64 = 1_000;

#[command(output = u64, local)]
#[derive(Clone)]
pub struct Add(pub u64, pub u64);

#[handler]
async fn add(cmd: Add) -> Result<u64, Infallible> {
    Ok(cmd.0 + cmd.1)
}

#[event(local)]
#[derive(Clone)]
pub struct Ticked(pub u64);

#[handler]
async fn tick_a(event: &Ticked) -> Result<(), Infallible> {
    black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_b(event: &Ticked) -> Result<(), Infallible> {
    black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_c(event: &Ticked) -> Result<(), Infallible> {
    black_box(event.0);
    Ok(())
}
#[handler]
async fn tick_d(event: &Ticked) -> Result<(), Infallible> {
    black_box(event.0);
    Ok(())
}

catga_core::static_app! {
    pub struct StaticAdd {
        Add => add,
    }
}

/// A no-op behaviour written as a pass-through: it returns the rest of the pipeline's future.
struct PassThrough;

impl Behavior for PassThrough {
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> impl std::future::Future<Output = Result<P::Output, Error>> + Send {
        next.run(msg)
    }
}

/// A no-op behaviour written as an `async fn` (its own state machine around the rest).
struct Noop;

impl Behavior for Noop {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        next.run(msg).await
    }
}

/// The baseline: the handler's body as a plain async function.
#[inline(never)]
async fn plain(a: u64, b: u64) -> Result<u64, Infallible> {
    Ok(a + b)
}

/// The peer: the `mediator` crate's request type and handler.
struct PeerAdd(u64, u64);
impl mediator::Request<u64> for PeerAdd {}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = Catga::builder().build().unwrap();
    let passthrough = Catga::builder()
        .layer(PassThrough)
        .layer(PassThrough)
        .layer(PassThrough)
        .build()
        .unwrap();
    let layered = Catga::builder()
        .layer(Noop)
        .layer(Noop)
        .layer(Noop)
        .build()
        .unwrap();
    // No subscriber is installed in this process: the cost of instrumentation nobody reads.
    let traced = Catga::builder().layer(Tracing).build().unwrap();
    let builtin = Catga::builder()
        .layer(Tracing)
        .layer(Timeout::new(std::time::Duration::from_secs(5)))
        .layer(Retry::exponential(3))
        .layer(Validation)
        .build()
        .unwrap();
    let static_app = StaticAdd::builder().build().unwrap();
    // `mediator`'s builder blocks in place, which needs a multi-threaded runtime.
    let builder_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let mut peer = builder_rt.block_on(async {
        DefaultAsyncMediator::builder()
            .add_handler_fn(|req: PeerAdd| async move { req.0 + req.1 })
            .build()
    });

    let mut group = c.benchmark_group("dispatch");
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
    group.bench_function("catga/static_send", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(static_app.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/send", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(app.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/send_3_passthrough_layers", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(passthrough.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/send_3_async_noop_layers", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(layered.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/send_tracing_no_subscriber", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(traced.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/send_tracing_timeout_retry_validation", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    black_box(builtin.send(Add(black_box(i), 1)).await.unwrap());
                }
            })
        })
    });
    group.bench_function("catga/publish_4_handlers", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    app.publish(Ticked(black_box(i))).await.unwrap();
                }
            })
        })
    });
    group.bench_function("peer/mediator_0.2_async_send", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..OPS {
                    let out: u64 = peer.send(PeerAdd(black_box(i), 1)).await.unwrap();
                    black_box(out);
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
