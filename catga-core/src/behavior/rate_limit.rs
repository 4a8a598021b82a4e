//! Rate limiting with GCRA (the generic cell rate algorithm, a token bucket without a timer).
//!
//! Why not the `governor` crate: its clocks do not follow Tokio's, so neither the limiter nor
//! its waits could run under `tokio::time::pause()`, and waiting must respect each dispatch's
//! deadline; per-message state already lives in catga's dense per-message table. What remains
//! of GCRA is one atomic "theoretical arrival time" and a compare-and-swap, below.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::message::MessageInfo;
use crate::monotonic::{duration_nanos, now_nanos};
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::{Rate, Skip};

/// Which messages share a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// One budget for every message without a `rate_limit` of its own.
    Global,
    /// A budget per message type.
    PerMessage,
    /// Only messages with `rate_limit = "…"` are limited.
    Declared,
}

/// Limits how often messages are dispatched: GCRA, with a burst allowance, globally or per
/// message, failing fast with [`ErrorKind::RateLimited`] or waiting for a permit up to the
/// dispatch's deadline.
///
/// A message's `rate_limit = "100/s"` attribute gives it its own budget at that rate, whatever
/// the scope; `skip(rate_limit)` exempts it. The budget refills continuously: at `100/s` a
/// permit frees up every 10 ms, and up to `burst` permits can be taken at once (by default
/// the whole rate, 100). A dispatch that stops waiting for its permit (a deadline, a
/// cancellation, a dropped future) gives it back when it was the last one reserved.
///
/// ```
/// use std::time::Duration;
/// use catga_core::behavior::RateLimit;
/// use catga_core::policy::Rate;
///
/// // Every message its own 50/s budget; wait up to 200 ms for a permit.
/// let limit = RateLimit::per_message(Rate::per_second(50)).wait_up_to(Duration::from_millis(200));
/// # let _ = limit;
/// ```
#[derive(Debug)]
pub struct RateLimit {
    rate: Option<Rate>,
    scope: Scope,
    burst: Option<u32>,
    max_wait: Option<Duration>,
    global: OnceLock<Gcra>,
    buckets: PerMessage<Gcra>,
}

impl RateLimit {
    fn with(rate: Option<Rate>, scope: Scope) -> Self {
        RateLimit {
            rate,
            scope,
            burst: None,
            max_wait: None,
            global: OnceLock::new(),
            buckets: PerMessage::default(),
        }
    }

    /// One budget of `rate` shared by every message without a `rate_limit` of its own.
    pub fn global(rate: Rate) -> Self {
        Self::with(Some(rate), Scope::Global)
    }

    /// A budget of `rate` for each message type.
    pub fn per_message(rate: Rate) -> Self {
        Self::with(Some(rate), Scope::PerMessage)
    }

    /// Only messages that declare `rate_limit = "…"` are limited, each at its own rate.
    pub fn declared() -> Self {
        Self::with(None, Scope::Declared)
    }

    /// How many permits can be taken at once (default: the rate's count). At least 1.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst.max(1));
        self
    }

    /// Waits for a permit instead of failing, for at most `max` (and never past the
    /// dispatch's deadline). The default is to fail fast.
    pub fn wait_up_to(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    fn bucket(&self, info: &MessageInfo) -> Option<&Gcra> {
        let burst = self.burst;
        if let Some(rate) = info.policy().rate_limit {
            return Some(self.buckets.get_or_init(info, || Gcra::new(rate, burst)));
        }
        let rate = self.rate?;
        match self.scope {
            Scope::Global => Some(self.global.get_or_init(|| Gcra::new(rate, burst))),
            Scope::PerMessage => Some(self.buckets.get_or_init(info, || Gcra::new(rate, burst))),
            Scope::Declared => None,
        }
    }
}

/// GCRA state: the theoretical arrival time of the next permit, in clock nanoseconds, and the
/// rate's constants, computed once.
#[derive(Debug)]
struct Gcra {
    tat: AtomicU64,
    /// Nanoseconds between permits at the steady rate.
    interval: u64,
    /// How far ahead of now the arrival time may run: the burst allowance.
    tolerance: u64,
}

impl Gcra {
    fn new(rate: Rate, burst: Option<u32>) -> Self {
        let interval = duration_nanos(rate.interval());
        let burst = u64::from(burst.unwrap_or(rate.count).max(1));
        Gcra {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        }
    }

    /// Takes a permit now, or reserves the next one if it frees up within `max_wait`.
    /// Returns the reservation (a zero wait: go now), or how long until a permit is free when
    /// that is too long.
    fn acquire(&self, max_wait: u64) -> Result<Reservation<'_>, u64> {
        let (interval, tolerance) = (self.interval, self.tolerance);
        let now = now_nanos();
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            // Permits are free until `start` exceeds now by more than the burst tolerance.
            let wait = start.saturating_sub(now).saturating_sub(tolerance);
            if wait > max_wait {
                return Err(wait);
            }
            let after = start.saturating_add(interval);
            match self
                .tat
                .compare_exchange_weak(tat, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        gcra: self,
                        wait,
                        before: tat,
                        after,
                    });
                }
                Err(current) => tat = current,
            }
        }
    }
}

/// A permit taken at `wait` nanoseconds from now. A dispatch dropped while it waits for its
/// permit (its deadline, a cancellation, its caller) gives the permit back if no later
/// dispatch reserved one after it: undoing the last reservation is exact; undoing an earlier
/// one would let two permits through closer together than the rate allows, so it is left
/// (the budget loses one permit, nothing waits longer than it was told).
struct Reservation<'a> {
    gcra: &'a Gcra,
    wait: u64,
    /// The arrival time before this reservation, and after it.
    before: u64,
    after: u64,
}

impl Reservation<'_> {
    /// The permit was used: nothing to give back.
    fn used(mut self) {
        self.after = self.before;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.after != self.before {
            let _ = self.gcra.tat.compare_exchange(
                self.after,
                self.before,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

impl Behavior for RateLimit {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        if info.policy().skip.contains(Skip::RATE_LIMIT) {
            return next.run(msg).await;
        }
        let Some(bucket) = self.bucket(info) else {
            return next.run(msg).await;
        };
        let mut max_wait = self.max_wait.map_or(0, duration_nanos);
        if max_wait > 0
            && let Some(left) = ctx.remaining()
        {
            max_wait = max_wait.min(duration_nanos(left));
        }
        match bucket.acquire(max_wait) {
            Ok(reservation) if reservation.wait == 0 => reservation.used(),
            Ok(reservation) => {
                metrics::counter!("catga_rate_limit_waits_total", "message" => info.name())
                    .increment(1);
                tokio::time::sleep(Duration::from_nanos(reservation.wait)).await;
                reservation.used();
            }
            Err(wait) => {
                metrics::counter!("catga_rate_limit_rejections_total", "message" => info.name())
                    .increment(1);
                return Err(ErrorKind::RateLimited {
                    message: info.name(),
                    retry_after: Duration::from_nanos(wait),
                }
                .into());
            }
        }
        next.run(msg).await
    }
}
