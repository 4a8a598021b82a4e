//! A bulkhead: at most N dispatches in flight, a bounded queue behind them, and shedding
//! beyond that.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::MessageInfo;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;

/// Caps how many dispatches run at once, per message type or for all of them together, so a
/// slow dependency cannot take every task and connection with it.
///
/// Up to `max_in_flight` dispatches run; up to `queue` more wait for a slot (in arrival
/// order, and never past their deadline: the mediator enforces it); any further dispatch is
/// shed at once with [`ErrorKind::Overloaded`]. A message's `concurrency = n` attribute gives
/// it its own limit of `n`; `bulkhead = "name"` puts it in a named group declared with
/// [`group`](Self::group), shared by every message that names it; `skip(concurrency_limit)`
/// exempts it. Taking a free slot is one atomic operation. A slot, and a place in the queue,
/// is given back however the dispatch ends: finished, failed, past its deadline, cancelled,
/// dropped by its caller, or unwound by a panic.
///
/// ```
/// use catga_core::behavior::ConcurrencyLimit;
///
/// // At most 16 in flight per message type, 64 more queued, the rest shed.
/// let bulkhead = ConcurrencyLimit::per_message(16).queue(64);
/// // All messages together share 100 slots.
/// let shared = ConcurrencyLimit::shared(100);
/// // Messages declared `bulkhead = "database"` share 8 slots.
/// let grouped = ConcurrencyLimit::per_message(16).group("database", 8);
/// # let _ = (bulkhead, shared, grouped);
/// ```
#[derive(Debug)]
pub struct ConcurrencyLimit {
    max_in_flight: usize,
    queue: usize,
    shared: bool,
    pools: PerMessage<Pool>,
    global: OnceLock<Pool>,
    groups: Vec<(&'static str, Pool)>,
}

impl ConcurrencyLimit {
    fn new(max_in_flight: usize, shared: bool) -> Self {
        ConcurrencyLimit {
            max_in_flight: max_in_flight.max(1),
            queue: 0,
            shared,
            pools: PerMessage::default(),
            global: OnceLock::new(),
            groups: Vec::new(),
        }
    }

    /// At most `max_in_flight` dispatches of each message type at once.
    pub fn per_message(max_in_flight: usize) -> Self {
        Self::new(max_in_flight, false)
    }

    /// At most `max_in_flight` dispatches at once, all message types together (messages with
    /// a `concurrency` attribute keep their own limit).
    pub fn shared(max_in_flight: usize) -> Self {
        Self::new(max_in_flight, true)
    }

    /// How many dispatches may wait for a slot before more are shed (default 0: shed at once).
    /// Applies to the groups declared after it too.
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// Declares the group `name`: at most `max_in_flight` dispatches at once of all the
    /// messages declared `bulkhead = "name"` together. A message that names a group nobody
    /// declared falls back to this behaviour's other limits.
    pub fn group(mut self, name: &'static str, max_in_flight: usize) -> Self {
        let pool = Pool::new(max_in_flight, self.queue);
        match self.groups.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = pool,
            None => self.groups.push((name, pool)),
        }
        self
    }

    fn pool(&self, info: &MessageInfo) -> &Pool {
        if let Some(group) = info.policy().bulkhead
            && let Some((_, pool)) = self.groups.iter().find(|(n, _)| *n == group)
        {
            return pool;
        }
        if let Some(own) = info.policy().max_in_flight {
            let own = usize::try_from(own).unwrap_or(usize::MAX);
            return self.pools.get_or_init(info, || Pool::new(own, self.queue));
        }
        if self.shared {
            self.global
                .get_or_init(|| Pool::new(self.max_in_flight, self.queue))
        } else {
            self.pools
                .get_or_init(info, || Pool::new(self.max_in_flight, self.queue))
        }
    }
}

/// One limit: its slots and how many wait for one.
#[derive(Debug)]
struct Pool {
    slots: Semaphore,
    limit: usize,
    queue: usize,
    waiting: AtomicUsize,
}

impl Pool {
    fn new(limit: usize, queue: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            slots: Semaphore::new(limit),
            limit,
            queue,
            waiting: AtomicUsize::new(0),
        }
    }

    async fn enter(&self, message: &'static str) -> Result<SemaphorePermit<'_>, Error> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("catga_concurrency_limit_shed_total", "message" => message)
                .increment(1);
            return Err(ErrorKind::Overloaded {
                message,
                in_flight: self.limit,
                queue: self.queue,
            }
            .into());
        }
        // Leaves the queue however the wait ends (a slot, a deadline, a cancellation).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting);
        metrics::gauge!("catga_concurrency_limit_queue_depth", "message" => message)
            .set(self.waiting.load(Ordering::Relaxed) as f64);
        self.slots.acquire().await.map_err(|_| {
            Error::from(ErrorKind::Overloaded {
                message,
                in_flight: self.limit,
                queue: self.queue,
            })
        })
    }
}

impl Behavior for ConcurrencyLimit {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        if info.policy().skip.contains(Skip::CONCURRENCY_LIMIT) {
            return next.run(msg).await;
        }
        let _slot = self.pool(info).enter(info.name()).await?;
        next.run(msg).await
    }
}
