//! Inline storage for handler futures: the zero-allocation dispatch path.
//!
//! The default dispatch path erases the handler's type (handlers are found at run time through
//! `inventory`), so its future cannot be a field of a known type. Boxing it would cost one
//! allocation per dispatch. Instead, each `send` future owns a pinned [`InlineSlot`], and a
//! `publish` leases a block of four from a pool (`slot_pool.rs`): the handler's future is
//! written into the slot once, polled there in place, and dropped there.
//! The behaviour stack's futures only carry a small [`SlotFuture`] handle, so adding layers
//! copies a few words, never the buffer.
//!
//! A future larger than [`INLINE_FUTURE_BYTES`] or aligned to more than 16 bytes is boxed
//! instead (one allocation per call); so is a second handler future while the slot is occupied
//! (a behaviour running the rest of the pipeline twice at once). A `debug` event names a
//! handler the first time its future does not fit.
//!
//! Why not `stackfuture`: it returns its buffer by value, and every `async` layer between the
//! handler and the dispatch moved that buffer again (measured: half of a dispatch's
//! instructions were `memcpy`). Placement into a pinned slot avoids every copy.

use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

/// How many bytes of handler future are stored without allocating.
pub const INLINE_FUTURE_BYTES: usize = 512;

/// The slot's alignment; futures aligned to more are boxed.
const SLOT_ALIGN: usize = 16;

#[repr(C, align(16))]
struct Buffer(MaybeUninit<[u8; INLINE_FUTURE_BYTES]>);

/// Erased operations on the future currently stored in a slot.
type PollFn<T> = unsafe fn(*mut u8, &mut TaskContext<'_>) -> Poll<T>;
type DropFn = unsafe fn(*mut u8);

/// A pinned buffer that holds at most one handler future. See the [module docs](self).
pub(crate) struct InlineSlot {
    /// Set by the one [`SlotFuture`] that owns the buffer, with an atomic swap.
    busy: AtomicBool,
    /// How to drop the occupant; written by the owner before `busy` is released.
    drop_fn: UnsafeCell<Option<DropFn>>,
    buf: UnsafeCell<Buffer>,
    _pinned: PhantomPinned,
}

// SAFETY: `drop_fn` and `buf` are only touched by the single owner that won the `busy` swap
// (or by `Drop`, which has `&mut self`). The occupant is `Send` (required by
// `SlotFuture::new`), so handing the owner between threads is sound; it is never accessed from
// two threads at once because only the owner accesses it, through `Pin<&mut SlotFuture>`.
unsafe impl Sync for InlineSlot {}

impl InlineSlot {
    pub(crate) const fn new() -> Self {
        InlineSlot {
            busy: AtomicBool::new(false),
            drop_fn: UnsafeCell::new(None),
            buf: UnsafeCell::new(Buffer(MaybeUninit::uninit())),
            _pinned: PhantomPinned,
        }
    }

    /// Whether a handler future is stored here.
    pub(crate) fn is_occupied(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn buffer(&self) -> *mut u8 {
        self.buf.get().cast()
    }

    /// Drops the occupant and frees the slot.
    ///
    /// # Safety
    /// The caller owns the slot (won the `busy` swap) and the occupant is live.
    unsafe fn release(&self) {
        // SAFETY: we own the slot, so nobody else reads or writes `drop_fn`.
        let drop_fn = unsafe { (*self.drop_fn.get()).take() };
        if let Some(drop_fn) = drop_fn {
            // SAFETY: `drop_fn` was written together with the occupant it drops, which the
            // caller guarantees is live and which never moved (the slot is pinned).
            unsafe { drop_fn(self.buffer()) };
        }
        self.busy.store(false, Ordering::Release);
    }
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        // Only reached with an occupant if its `SlotFuture` was leaked: drop it here so the
        // pinned future is dropped before its memory is reused, as `Pin` requires.
        if *self.busy.get_mut() {
            // SAFETY: `&mut self` means no `SlotFuture` borrows the slot any more, so we own it,
            // and `busy` says the occupant is live.
            unsafe { self.release() };
        }
    }
}

/// A handler call's future: in a slot when it fits, boxed otherwise.
pub(crate) struct SlotFuture<'a, T> {
    state: State<'a, T>,
}

enum State<'a, T> {
    Inline {
        slot: Pin<&'a InlineSlot>,
        poll: PollFn<T>,
    },
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
    Done,
}

/// Whether a future of type `F` can be stored inline.
#[inline(always)]
pub(crate) const fn fits<F>() -> bool {
    size_of::<F>() <= INLINE_FUTURE_BYTES && align_of::<F>() <= SLOT_ALIGN
}

#[inline(always)]
unsafe fn poll_occupant<F: Future>(ptr: *mut u8, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
    // SAFETY: the caller passes the slot's buffer holding a live `F` that never moves until it
    // is dropped (the slot is pinned and the occupant is only dropped in place).
    unsafe { Pin::new_unchecked(&mut *(ptr as *mut F)).poll(cx) }
}

#[inline(always)]
unsafe fn drop_occupant<F>(ptr: *mut u8) {
    // SAFETY: the caller passes the slot's buffer holding a live `F`, dropped exactly once.
    unsafe { std::ptr::drop_in_place(ptr as *mut F) }
}

impl<'a, T> SlotFuture<'a, T> {
    /// Stores `future` in `slot` if it fits and the slot is free, otherwise boxes it.
    #[inline(always)]
    pub(crate) fn new<F>(slot: Pin<&'a InlineSlot>, future: F) -> Self
    where
        F: Future<Output = T> + Send + 'a,
    {
        // `const { … }`: decided when the handler is compiled, so a debug build has no call
        // (and no `fits`/`size_of`/`align_of` functions) per handler either.
        if const { fits::<F>() } && !slot.busy.swap(true, Ordering::Acquire) {
            let ptr = slot.buffer();
            // SAFETY: we won the `busy` swap, so we own the buffer; it is large and aligned
            // enough for `F` (`fits`); it is free, so writing does not overwrite a live value.
            // The slot is pinned, so `F` will not move until it is dropped in place.
            unsafe {
                // `as`, not `.cast()`: one generic function fewer per handler in a debug build.
                (ptr as *mut F).write(future);
                *slot.drop_fn.get() = Some(drop_occupant::<F>);
            }
            SlotFuture {
                state: State::Inline {
                    slot,
                    poll: poll_occupant::<F>,
                },
            }
        } else {
            SlotFuture {
                state: State::Boxed(Box::pin(future)),
            }
        }
    }

    /// Whether the future is stored inline (for tests and diagnostics).
    #[cfg(test)]
    fn is_inline(&self) -> bool {
        matches!(self.state, State::Inline { .. })
    }
}

impl<T> Future for SlotFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        // `SlotFuture` is `Unpin`: the pinned data lives in the slot or the box, not in `self`.
        let this = self.get_mut();
        match &mut this.state {
            State::Boxed(future) => future.as_mut().poll(cx),
            State::Inline { slot, poll } => {
                // SAFETY: in `Inline` state we own the slot and its occupant is live and pinned.
                let result = unsafe { poll(slot.buffer(), cx) };
                if result.is_ready() {
                    // SAFETY: as above; after this the state no longer refers to the occupant.
                    unsafe { slot.release() };
                    this.state = State::Done;
                }
                result
            }
            // Polled after completion: a contract violation by the caller, reported the way
            // std's futures report it (an `async fn` panics too), rather than a silent hang.
            State::Done => panic!("`SlotFuture` polled after completion"),
        }
    }
}

impl<T> Drop for SlotFuture<'_, T> {
    fn drop(&mut self) {
        if let State::Inline { slot, .. } = &self.state {
            // SAFETY: in `Inline` state we own the slot and its occupant is live.
            unsafe { slot.release() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    struct CountDrops(Arc<AtomicUsize>);
    impl Drop for CountDrops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn runs_inline_and_frees_the_slot() {
        let slot = pin!(InlineSlot::new());
        let a = SlotFuture::new(slot.as_ref(), async { 1 + 1 });
        assert!(a.is_inline());
        assert_eq!(block_on(a), 2);
        let b = SlotFuture::new(slot.as_ref(), async { 3 });
        assert!(b.is_inline(), "the slot is reusable after completion");
        assert_eq!(block_on(b), 3);
    }

    #[test]
    #[should_panic(expected = "polled after completion")]
    fn polling_after_completion_panics_as_std_futures_do() {
        let slot = pin!(InlineSlot::new());
        let mut done = pin!(SlotFuture::new(slot.as_ref(), async { 1 }));
        let waker = std::task::Waker::noop();
        let mut cx = TaskContext::from_waker(waker);
        assert_eq!(done.as_mut().poll(&mut cx), Poll::Ready(1));
        let _ = done.as_mut().poll(&mut cx);
    }

    #[test]
    fn a_second_future_while_occupied_is_boxed() {
        let slot = pin!(InlineSlot::new());
        let a = SlotFuture::new(slot.as_ref(), async { 1 });
        let b = SlotFuture::new(slot.as_ref(), async { 2 });
        assert!(a.is_inline() && !b.is_inline());
        assert_eq!(block_on(async { a.await + b.await }), 3);
    }

    #[test]
    fn oversized_futures_are_boxed() {
        let slot = pin!(InlineSlot::new());
        let big = [7u8; INLINE_FUTURE_BYTES * 2];
        let f = SlotFuture::new(slot.as_ref(), async move {
            futures::future::ready(()).await;
            big[big.len() - 1]
        });
        assert!(!f.is_inline());
        assert_eq!(block_on(f), 7);
    }

    #[test]
    fn dropping_an_unfinished_future_drops_its_state_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = pin!(InlineSlot::new());
        let guard = CountDrops(drops.clone());
        let f = SlotFuture::new(slot.as_ref(), async move {
            let _guard = guard;
            futures::future::pending::<()>().await;
        });
        drop(f);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(
            SlotFuture::new(slot.as_ref(), async {}).is_inline(),
            "slot freed"
        );
    }

    #[test]
    fn a_leaked_future_is_dropped_with_its_slot() {
        let drops = Arc::new(AtomicUsize::new(0));
        {
            let slot = pin!(InlineSlot::new());
            let guard = CountDrops(drops.clone());
            let f = SlotFuture::new(slot.as_ref(), async move {
                let _guard = guard;
                futures::future::pending::<()>().await;
            });
            std::mem::forget(f);
            assert_eq!(drops.load(Ordering::SeqCst), 0);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn finished_futures_are_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = pin!(InlineSlot::new());
        let guard = CountDrops(drops.clone());
        let f = SlotFuture::new(slot.as_ref(), async move {
            let _guard = guard;
        });
        block_on(f);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
