//! The outbox's backlog, as gauges: how many entries wait to be published, and how long the
//! oldest of them has waited.
//!
//! A published entry leaves the outbox stream (the finish script's `XDEL`), and the per-key
//! lists and the claims only index what the stream holds, so the stream's length is the
//! backlog, entries being published included. A started
//! [`RedisOutboxRelay`](super::RedisOutboxRelay) measures it every [`SAMPLE_EVERY`], beside
//! its rounds, with one read-only script (one round trip): `XLEN` (O(1)), the first entry's
//! id (`XRANGE - + COUNT 1`, O(log n)), whose milliseconds are the server's clock when it was
//! added, and `TIME`, so the age is measured on the server's clock alone.
//!
//! Every relay measures, leader or not: each instance reports the same outbox, so a dashboard
//! takes the maximum over instances, not the sum. A measurement that fails is logged at
//! `debug` and leaves the gauges as they were.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::error::RedisOutboxError;

/// Gauge, entries: events committed to the outbox stream and not yet published (entries a
/// relay is publishing included, until its round finishes). Label: `outbox`, the stream's key
/// (`{P:outbox}:stream`). Measured by every started
/// [`RedisOutboxRelay`](super::RedisOutboxRelay) every 5 s with one read-only script (`XLEN`,
/// the first entry's id, `TIME`: one round trip, O(log n)); instances report the same value,
/// so aggregate with `max`, not `sum`.
pub const OUTBOX_PENDING: &str = "catga_outbox_pending";

/// Gauge, seconds: how long the oldest entry of the outbox stream has waited, on the server's
/// clock, since it was added (at its commit); 0 when the stream is empty. Label and sampling
/// as [`OUTBOX_PENDING`].
pub const OUTBOX_OLDEST_AGE: &str = "catga_outbox_oldest_age_seconds";

/// How often a running relay measures the backlog.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

static BACKLOG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("backlog.lua")));

/// Measures one outbox's backlog.
pub(super) struct Backlog {
    shared: Arc<Shared>,
}

impl Backlog {
    pub(super) fn new(shared: &Arc<Shared>) -> Backlog {
        Backlog {
            shared: Arc::clone(shared),
        }
    }

    /// Measures now and then every [`SAMPLE_EVERY`] until `stop`.
    pub(super) async fn run(&self, stop: &CancellationToken) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stream = &self.shared.keys.stream;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let measured = tokio::select! {
                () = stop.cancelled() => return,
                measured = self.measure() => measured,
            };
            match measured {
                Ok((entries, oldest_age)) => {
                    metrics::gauge!(OUTBOX_PENDING, "outbox" => stream.clone()).set(entries as f64);
                    metrics::gauge!(OUTBOX_OLDEST_AGE, "outbox" => stream.clone()).set(oldest_age);
                }
                Err(error) => {
                    tracing::debug!(target: "catga::redis", outbox = %stream, error = %error,
                        "outbox relay: could not measure the backlog; the gauges keep their last values");
                }
            }
        }
    }

    /// The entries in the stream and the oldest one's age in seconds.
    async fn measure(&self) -> Result<(u64, f64), RedisOutboxError> {
        let stream = &self.shared.keys.stream;
        let mut invocation = BACKLOG.prepare_invoke();
        invocation.key(stream);
        let (entries, age_us): (u64, u64) = self
            .shared
            .conn
            .invoke("outbox relay: measure the backlog", stream, &invocation)
            .await
            .map_err(RedisOutboxError::Store)?;
        Ok((entries, age_us as f64 / 1e6))
    }
}
