//! Whether Redis answers the cache's commands, and logging an outage once.
//!
//! A command that fails for want of a connection, or takes longer than the cache's
//! `timeout`, starts an outage: it is logged once, at `warn`, and for `retry_interval` the
//! cache does not try Redis at all (every lookup is a miss at once, so queries do not each
//! wait out a timeout). After that, one command tries again; the first that succeeds ends the
//! outage, logged once at `info`. Other failures (a server error such as `OOM` on a store) do
//! not stop the cache from trying; the first of a run of them is logged at `warn`.

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A command Redis did not answer within the cache's `timeout`.
#[derive(Debug, thiserror::Error)]
#[error("redis `{command}` had no answer within {after:?}")]
pub(crate) struct TimedOut {
    pub command: &'static str,
    pub after: Duration,
}

/// No outage: the value of `retry_at` while Redis answers.
const UP: u64 = 0;

#[derive(Debug)]
pub(crate) struct Health {
    /// When the next command may try during an outage, in microseconds since `origin` (at
    /// least 1); [`UP`] when there is none.
    retry_at: AtomicU64,
    /// Whether the last run of commands ended in a failure that is not an outage, already
    /// logged.
    failing: AtomicBool,
    origin: Instant,
    retry_interval: Duration,
    prefix: String,
    /// Woken when an outage ends, so work held back by it goes on at once.
    recovered: Notify,
}

impl Health {
    pub(crate) fn new(retry_interval: Duration, prefix: &str) -> Self {
        Health {
            retry_at: AtomicU64::new(UP),
            failing: AtomicBool::new(false),
            origin: Instant::now(),
            retry_interval,
            prefix: prefix.to_string(),
            recovered: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        let micros = self.origin.elapsed().as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX - 1).max(1)
    }

    fn next_try(&self) -> u64 {
        let interval = u64::try_from(self.retry_interval.as_micros()).unwrap_or(u64::MAX / 2);
        self.now().saturating_add(interval)
    }

    /// Completes when the outage going on ends (create it before looking at the outage).
    pub(crate) fn recovered(&self) -> tokio::sync::futures::Notified<'_> {
        self.recovered.notified()
    }

    /// Whether Redis is out, as far as the cache knows (no waiting for it then).
    pub(crate) fn is_out(&self) -> bool {
        self.retry_at.load(Ordering::Acquire) != UP
    }

    /// Whether a command may be sent now: always without an outage; during one, only by the
    /// first caller after each `retry_interval`.
    pub(crate) fn may_try(&self) -> bool {
        let at = self.retry_at.load(Ordering::Acquire);
        if at == UP {
            return true;
        }
        let now = self.now();
        now >= at
            && self
                .retry_at
                .compare_exchange(at, self.next_try(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// A command was answered.
    pub(crate) fn answered(&self) {
        if self.retry_at.load(Ordering::Acquire) != UP
            && self.retry_at.swap(UP, Ordering::AcqRel) != UP
        {
            tracing::info!(target: "catga::redis::cache", prefix = %self.prefix,
                "the Redis cache answers again; caching resumes");
            self.recovered.notify_waiters();
        }
        if self.failing.load(Ordering::Relaxed) {
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    /// A command failed for want of a connection, or timed out: an outage starts (or goes on).
    pub(crate) fn out(&self, command: &'static str, error: &(dyn Error + 'static)) {
        if self.retry_at.swap(self.next_try(), Ordering::AcqRel) == UP {
            tracing::warn!(target: "catga::redis::cache", prefix = %self.prefix, command,
                error, retry_every = ?self.retry_interval,
                "the Redis cache is unreachable; queries run their handlers until it answers \
                 again");
        }
    }

    /// A command failed otherwise (a server error): logged once per run of failures.
    pub(crate) fn failed(&self, command: &'static str, error: &(dyn Error + 'static)) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "catga::redis::cache", prefix = %self.prefix, command,
                error, "a Redis cache command failed; the query ran its handler");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_lets_one_command_try_per_interval() {
        let health = Health::new(Duration::from_secs(1), "p");
        assert!(health.may_try() && !health.is_out());
        let error = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        health.out("MGET", &error);
        assert!(health.is_out());
        assert!(!health.may_try(), "not before the interval");
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(health.may_try(), "one probe");
        assert!(!health.may_try(), "only one");
        health.answered();
        assert!(!health.is_out() && health.may_try());
    }
}
