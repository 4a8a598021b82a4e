//! A global allocator that counts the allocations made on one thread while a future runs, for
//! the tests that assert allocation counts (`allocations.rs`, `release/slots.rs`). Included
//! with `#[path]`: a test binary has one global allocator, so each that counts includes this.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to `System`; only counts, on the calling thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note_allocation() {
    // `try_with`: the allocator runs during thread-local teardown too.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while `work` runs to its end (on a current-thread
/// runtime, so the work stays on this thread).
pub async fn allocations_of<F: Future>(work: F) -> u64 {
    COUNT.set(0);
    COUNTING.set(true);
    work.await;
    COUNTING.set(false);
    COUNT.get()
}
