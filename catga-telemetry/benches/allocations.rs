//! Heap allocations per dispatch, counted by a global allocator: the same in-process `send`
//! as `benches/dispatch.rs`, bare, with the `Tracing` behaviour and no subscriber, under the
//! OpenTelemetry layer alone, and under the whole catga-telemetry subscriber. Counted twice:
//! on the dispatching thread (what a handler's caller pays), and in the whole process (the
//! batch processor's export, and the in-process receiver decoding it, included). Prints a
//! table; asserts nothing.
//!
//! ```text
//! cargo bench -p catga-telemetry --bench allocations
//! ```

mod setup;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use catga_telemetry::testkit::OtlpReceiver;
use setup::Add;

/// Counts every allocation of the process, and those of each thread.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` and without a destructor: usable from the allocator at any time.
    static THIS_THREAD: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    let _ = THIS_THREAD.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes as u64));
    });
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: u64 = 2_000;
const SENDS: u64 = 20_000;

/// Allocations and bytes per call of `send`, after a warm-up: (this thread, whole process).
fn per_dispatch(send: &dyn Fn(u64) -> u64) -> [(f64, f64); 2] {
    for i in 0..WARMUP {
        black_box(send(i));
    }
    let process = || {
        (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        )
    };
    let (t0, p0) = (THIS_THREAD.with(Cell::get), process());
    for i in 0..SENDS {
        black_box(send(i));
    }
    let (t1, p1) = (THIS_THREAD.with(Cell::get), process());
    let per = |(a0, b0): (u64, u64), (a1, b1): (u64, u64)| {
        (
            (a1 - a0) as f64 / SENDS as f64,
            (b1 - b0) as f64 / SENDS as f64,
        )
    };
    [per(t0, t1), per(p0, p1)]
}

fn main() {
    let rt = setup::runtime();
    let bare = setup::bare();
    let traced = setup::traced();
    // Before any subscriber exists: then `tracing`'s callsites know that nobody listens.
    let mut rows = vec![
        (
            "bare send",
            per_dispatch(&|i| rt.block_on(bare.send(Add(i, 1))).expect("adds")),
        ),
        (
            "Tracing, no subscriber",
            per_dispatch(&|i| rt.block_on(traced.send(Add(i, 1))).expect("adds")),
        ),
    ];
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let full = setup::full_telemetry(&receiver);
    let (otel_only, provider) = setup::otel_layer_only();
    tracing::dispatcher::with_default(&otel_only, || {
        rows.push((
            "Tracing, OTel layer only (batches dropped)",
            per_dispatch(&|i| rt.block_on(traced.send(Add(i, 1))).expect("adds")),
        ));
    });
    tracing::dispatcher::with_default(&full.dispatch, || {
        rows.push((
            "Tracing, catga-telemetry (JSON logs, OTLP to loopback)",
            per_dispatch(&|i| rt.block_on(traced.send(Add(i, 1))).expect("adds")),
        ));
    });
    drop(provider.shutdown());
    drop(full.guard.shutdown());

    let [(base_allocs, base_bytes), (base_all, _)] = rows[0].1;
    println!(
        "| per dispatch | allocations (this thread) | bytes (this thread) | over bare | allocations (whole process) | over bare |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, [(allocs, bytes), (all, _)]) in &rows {
        println!(
            "| {name} | {allocs:.2} | {bytes:.0} | {:+.2} allocs, {:+.0} B | {all:.2} | {:+.2} |",
            allocs - base_allocs,
            bytes - base_bytes,
            all - base_all,
        );
    }
    println!(
        "(the receiver got {} spans in {} requests)",
        receiver.spans().len(),
        receiver.requests()
    );
}
