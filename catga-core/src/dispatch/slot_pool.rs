//! Reused blocks of inline slots for in-process `publish`.
//!
//! A publish to up to four handlers runs their futures in four [`InlineSlot`]s (2 KB). Kept in
//! the publish future itself, those slots made every publish future 3 KB, which every caller
//! copies when it moves the future (into `join_all`, a spawned task) and which made every
//! publish through a transport, where no slot is ever used, pay for copying and allocating
//! them (measured: half of catga's extra instructions per JetStream publish). Instead an
//! in-process publish leases a heap block of four slots and gives it back when it ends.
//!
//! Blocks are kept per thread (no atomic operation on the common path) and, beyond a few per
//! thread, in one shared list, so a publish that started on one thread and ended on another
//! (work stealing) hands its block to whichever thread needs one next. Once as many blocks
//! exist as publishes have run at once (up to [`KEPT_SHARED`] + [`KEPT_PER_THREAD`] per
//! thread), a publish allocates nothing.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use crate::dispatch::inline::InlineSlot;

/// Blocks a thread keeps for itself.
const KEPT_PER_THREAD: usize = 8;
/// Blocks kept for all threads, beyond those.
const KEPT_SHARED: usize = 256;

/// Four slots: one per handler of a publish joined in place.
pub(crate) struct SlotBlock {
    slots: [InlineSlot; 4],
}

// Boxed blocks: a leased block's slots are pinned, so a block moves only as a pointer.
thread_local! {
    #[allow(clippy::vec_box, reason = "the blocks must not move: see above")]
    static LOCAL: RefCell<Vec<Box<SlotBlock>>> = const { RefCell::new(Vec::new()) };
}

#[allow(clippy::vec_box, reason = "the blocks must not move: see above")]
static SHARED: Mutex<Vec<Box<SlotBlock>>> = Mutex::new(Vec::new());

/// One publish's block of slots, back to the pool when dropped.
pub(crate) struct SlotLease {
    /// Taken out only in `drop`.
    block: ManuallyDrop<Box<SlotBlock>>,
}

impl SlotLease {
    /// A free block: this thread's, else a shared one, else a new one.
    pub(crate) fn take() -> SlotLease {
        let local = LOCAL
            .try_with(|blocks| blocks.try_borrow_mut().ok().and_then(|mut b| b.pop()))
            .ok()
            .flatten();
        let block = local
            .or_else(|| SHARED.lock().unwrap_or_else(PoisonError::into_inner).pop())
            .unwrap_or_else(|| {
                Box::new(SlotBlock {
                    slots: [const { InlineSlot::new() }; 4],
                })
            });
        SlotLease {
            block: ManuallyDrop::new(block),
        }
    }

    /// The four slots, pinned: the block is on the heap and only moves as a pointer.
    pub(crate) fn slots(&self) -> [Pin<&InlineSlot>; 4] {
        // SAFETY: a slot is never moved out of its boxed block, and the block is freed or
        // reused only when the lease is dropped, after every borrow of it (the handlers'
        // `SlotFuture`s, which release their occupant when dropped) has ended.
        self.block
            .slots
            .each_ref()
            .map(|slot| unsafe { Pin::new_unchecked(slot) })
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and `self.block` is not used after this.
        let block = unsafe { ManuallyDrop::take(&mut self.block) };
        // Only a leaked handler future could still occupy a slot; such a block is freed (the
        // slot drops its occupant in place) rather than reused.
        if block.slots.iter().any(InlineSlot::is_occupied) {
            return;
        }
        let mut spare = Some(block);
        // Fails only while the thread exits; the block then goes to the shared list.
        let _ = LOCAL.try_with(|blocks| {
            if let Ok(mut blocks) = blocks.try_borrow_mut()
                && blocks.len() < KEPT_PER_THREAD
                && let Some(block) = spare.take()
            {
                blocks.push(block);
            }
        });
        if let Some(block) = spare {
            let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
            if shared.len() < KEPT_SHARED {
                shared.push(block);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::inline::SlotFuture;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn first_slot(lease: &SlotLease) -> *const InlineSlot {
        std::ptr::from_ref(lease.slots()[0].get_ref())
    }

    #[test]
    fn a_returned_block_is_taken_again_on_the_same_thread() {
        std::thread::spawn(|| {
            let lease = SlotLease::take();
            let first = first_slot(&lease);
            drop(lease);
            let again = SlotLease::take();
            assert_eq!(first_slot(&again), first);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_keeps_a_few_blocks_and_shares_the_rest() {
        std::thread::spawn(|| {
            let leases: Vec<_> = (0..KEPT_PER_THREAD + 3)
                .map(|_| SlotLease::take())
                .collect();
            drop(leases);
            assert_eq!(LOCAL.with(|blocks| blocks.borrow().len()), KEPT_PER_THREAD);
        })
        .join()
        .unwrap();
    }

    struct CountDrops(Arc<AtomicUsize>);
    impl Drop for CountDrops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_block_whose_slot_is_still_occupied_is_freed_with_its_occupant() {
        std::thread::spawn(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let lease = SlotLease::take();
            let guard = CountDrops(drops.clone());
            let occupant = SlotFuture::new(lease.slots()[0], async move {
                let _guard = guard;
            });
            // Leaked: the slot stays occupied, so the block must not be handed out again.
            std::mem::forget(occupant);
            drop(lease);
            assert_eq!(drops.load(Ordering::SeqCst), 1, "the occupant was dropped");
            assert_eq!(LOCAL.with(|blocks| blocks.borrow().len()), 0);
            let next = SlotLease::take();
            assert!(next.slots().iter().all(|slot| !slot.is_occupied()));
        })
        .join()
        .unwrap();
    }
}
