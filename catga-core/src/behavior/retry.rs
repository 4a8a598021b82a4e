//! Retries with exponential backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use crate::context::Context;
use crate::error::Error;
use crate::message::MessageKind;
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};

/// Runs the rest of the pipeline again when it fails with a [retryable](Error::is_retryable)
/// error, up to a number of attempts, sleeping `base · 2^(n-1)` (capped at `max_delay`) with
/// jitter between attempts. [`Context::attempt`] tells the handler which attempt it is.
///
/// * Only retryable errors are retried: timeouts and handler errors whose type implements
///   [`Retryable`](crate::Retryable) and says so.
/// * **An operation that may already have taken effect is retried only when it is safe to
///   repeat.** A failure whose outcome is unknown ([`Error::is_in_doubt`]: a timeout while the
///   handler ran, a reply lost on the way back, a connection lost after sending) is retried
///   for queries, event handlers and commands declared `#[command(idempotent)]`; for any
///   other command it is returned at once, because running it again might do it twice.
///   Failures known to have happened before the handler ran (nobody serving the request, a
///   broker that could not be reached) and a handler's own retryable errors are retried for
///   every message.
/// * **An event delivered by a transport is not retried here**: the transport's redelivery
///   is its retry (it survives a crash and frees the consumer while it waits), so the total
///   number of runs of one event's handler is the transport's `max_deliveries`, not that
///   times this behaviour's attempts. [`Context::attempt`] reports the delivery number.
/// * A retry needs a fresh copy of the message, so only `Clone` messages are retried; others
///   get one attempt. `#[command(retry = n)]` sets the attempts for one message.
/// * No sleep runs past the context's deadline: when the next delay would end after it, the
///   last error is returned at once.
///
/// ```
/// use std::time::Duration;
/// use catga_core::behavior::Retry;
///
/// let retry = Retry::exponential(5)
///     .base_delay(Duration::from_millis(20))
///     .max_delay(Duration::from_secs(1));
/// assert_eq!(retry.max_attempts(), 5);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Retry {
    /// Up to `max_attempts` attempts in all (1 = no retry), starting at 100 ms, capped at 10 s.
    pub const fn exponential(max_attempts: u32) -> Self {
        Retry {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            jitter: true,
        }
    }

    /// The delay before the first retry.
    pub const fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest delay between attempts.
    pub const fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Uses the exact exponential delays, without jitter (for tests and tight control).
    pub const fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// Attempts in all, including the first.
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after failed attempt `attempt` (1-based): exponential, capped, and with
    /// "equal jitter" (between half and all of it) so clients that failed together spread out.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let full = self.base_delay.saturating_mul(factor).min(self.max_delay);
        if !self.jitter {
            return full;
        }
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        // A fresh RandomState is seeded randomly per thread and perturbed per call: enough
        // randomness for spreading retries without a dependency on an RNG crate.
        let random = RandomState::new().hash_one(attempt);
        half + Duration::from_nanos(if nanos == 0 { 0 } else { random % (nanos + 1) })
    }
}

impl Behavior for Retry {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        // A transport delivery of an event is retried by the transport (see above).
        let redelivered = info.kind() == MessageKind::Event && ctx.delivery().is_some();
        if redelivered || info.policy().skip.contains(crate::policy::Skip::RETRY) {
            return next.run(msg).await;
        }
        let max = info
            .policy()
            .max_attempts
            .unwrap_or(self.max_attempts)
            .max(1);
        let repeatable = info.kind() != MessageKind::Command || info.policy().idempotent;
        let mut msg = msg;
        let mut attempt = 1;
        loop {
            ctx.set_attempt(attempt);
            let spare = if attempt < max { msg.try_clone() } else { None };
            let error = match next.run(msg).await {
                Err(error) if error.is_retryable() && (repeatable || !error.is_in_doubt()) => error,
                Err(error) => {
                    if error.is_retryable() {
                        tracing::debug!(target: "catga", message = info.name(), attempt, error = %error,
                            "not retried: it may already have taken effect, and the command is not `idempotent`");
                    }
                    return Err(error);
                }
                done => return done,
            };
            let Some(again) = spare else {
                return Err(error);
            };
            let delay = self.delay_after(attempt);
            if ctx.remaining().is_some_and(|left| left <= delay) {
                return Err(error);
            }
            tracing::debug!(
                target: "catga",
                message = again.info().name(),
                attempt,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying"
            );
            // `message` as the other behaviours' counters label it; `error_type` the code of
            // the failure that is retried.
            metrics::counter!("catga_retries_total", "message" => again.info().name(),
                "error_type" => error.code().to_string())
            .increment(1);
            tokio::time::sleep(delay).await;
            msg = again;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let r = Retry::exponential(10)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .without_jitter();
        assert_eq!(r.delay_after(1), Duration::from_millis(100));
        assert_eq!(r.delay_after(2), Duration::from_millis(200));
        assert_eq!(r.delay_after(4), Duration::from_millis(800));
        assert_eq!(r.delay_after(5), Duration::from_secs(1));
        assert_eq!(r.delay_after(60), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let r = Retry::exponential(10).base_delay(Duration::from_millis(100));
        for attempt in 1..6 {
            let full = Duration::from_millis(100) * 2u32.pow(attempt - 1);
            for _ in 0..50 {
                let d = r.delay_after(attempt);
                assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
            }
        }
    }
}
