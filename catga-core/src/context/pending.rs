//! Events a handler queued with [`Context::publish`](super::Context::publish), kept until the
//! dispatch decides what becomes of them.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Error;
use crate::message::AnyMessage;

use super::MAX_PENDING_EVENTS;

/// Events queued by handlers, each tagged with the handler scope that queued it.
///
/// A publish runs several handlers concurrently against one context; the scope tag (set while a
/// handler's future is polled, see `in_scope`) lets the mediator drop exactly the events of a
/// handler that failed.
#[derive(Debug, Default)]
pub(crate) struct PendingEvents {
    /// Mirrors `list.len()` so the common empty case is one relaxed load, no lock.
    len: AtomicUsize,
    list: Mutex<Vec<Pending>>,
}

pub(crate) struct Pending {
    pub(crate) scope: u32,
    pub(crate) event: Box<dyn AnyMessage>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("scope", &self.scope)
            .field("event", &self.event.info().name())
            .finish()
    }
}

impl PendingEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn push(&self, event: Box<dyn AnyMessage>, name: &'static str) -> Result<(), Error> {
        let mut list = self.lock();
        if list.len() >= MAX_PENDING_EVENTS {
            return Err(crate::ErrorKind::TooManyEvents {
                message: name,
                limit: MAX_PENDING_EVENTS,
            }
            .into());
        }
        list.push(Pending {
            scope: SCOPE.get(),
            event,
        });
        self.len.store(list.len(), Ordering::Release);
        Ok(())
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Drops everything queued after `mark` (a failed single-handler attempt).
    pub(crate) fn truncate(&self, mark: usize) {
        if self.len() > mark {
            let mut list = self.lock();
            list.truncate(mark);
            self.len.store(list.len(), Ordering::Release);
        }
    }

    /// Drops everything queued by `scope` (a failed handler of a publish).
    pub(crate) fn discard_scope(&self, scope: u32) {
        if self.len() > 0 {
            let mut list = self.lock();
            list.retain(|p| p.scope != scope);
            self.len.store(list.len(), Ordering::Release);
        }
    }

    /// Takes the events `select` picks, in the order queued; the rest stay queued, in order.
    pub(crate) fn take_matching(&self, select: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        if self.len() == 0 {
            return Vec::new();
        }
        let mut list = self.lock();
        let (taken, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|p| select(p));
        *list = kept;
        self.len.store(list.len(), Ordering::Release);
        taken
    }

    pub(crate) fn take(&self) -> Vec<Pending> {
        if self.len() == 0 {
            return Vec::new();
        }
        let mut list = self.lock();
        self.len.store(0, Ordering::Release);
        std::mem::take(&mut *list)
    }
}

thread_local! {
    /// The handler scope whose future is being polled on this thread (0 = none).
    static SCOPE: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` (a handler's poll) with the thread's handler scope set to `scope`, so the events
/// the handler queues during that poll are tagged with it.
#[inline]
pub(crate) fn in_scope<R>(scope: u32, f: impl FnOnce() -> R) -> R {
    // Restored on unwind too, so a panicking handler cannot mislabel later events.
    let _restore = RestoreScope(SCOPE.replace(scope));
    f()
}

struct RestoreScope(u32);

impl Drop for RestoreScope {
    fn drop(&mut self) {
        SCOPE.set(self.0);
    }
}
