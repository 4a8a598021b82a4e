//! The outbox's backlog, as gauges: how many rows wait to be published, and how long the
//! oldest of them has waited.
//!
//! A started [`OutboxRelay`](super::OutboxRelay) measures it every [`SAMPLE_EVERY`], beside
//! its rounds (never on a commit's path, and never holding a round up), with one statement
//! that walks only the `outbox_unpublished_position` index:
//!
//! ```sql
//! SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 10000) c),
//!        (SELECT max(position) - min(position) + 1 FROM outbox WHERE published_at IS NULL),
//!        (SELECT now() - created_at FROM outbox WHERE published_at IS NULL ORDER BY position LIMIT 1)
//! ```
//!
//! A count is as long as what it counts, so rows are counted one by one only up to
//! [`COUNTED`] (about 1.5 ms for 10,000 on a vacuumed index, here); beyond, the backlog is
//! the span of the unpublished rows' positions, an estimate that costs two index look-ups and
//! errs high (it includes positions of rows already published out of order and of commits
//! that rolled back), which is the side a backlog alarm wants. The oldest row is the first by
//! position, and its age is measured on the database's clock (`created_at`, when the
//! transaction that wrote it began), so a skewed application clock does not distort it.
//!
//! Every relay measures, leader or not (see
//! [`recover_while_leading`](super::OutboxRelay::recover_while_leading)): each instance
//! reports the same outbox, so a dashboard takes the maximum over instances, not the sum. A
//! measurement that fails is logged at `debug` and leaves the gauges as they were.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// Gauge, rows: events committed to the outbox and not yet published (claimed rows
/// included, until their round commits). Exact up to 10,000; beyond, estimated from the span
/// of the unpublished rows' positions, which errs high. Label: `outbox`, the schema. Measured
/// by every started [`OutboxRelay`](super::OutboxRelay) every 5 s with one index-only query;
/// instances report the same value, so aggregate with `max`, not `sum`.
pub const OUTBOX_PENDING: &str = "catga_outbox_pending";

/// Gauge, seconds: how long the oldest unpublished row (the first by position) has waited,
/// on the database's clock, since the transaction that wrote it began; 0 when the outbox is
/// empty. Label and sampling as [`OUTBOX_PENDING`].
pub const OUTBOX_OLDEST_AGE: &str = "catga_outbox_oldest_age_seconds";

/// How often a running relay measures the backlog: far below a scrape interval's worth of
/// staleness, and one cheap query per relay.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Rows counted one by one; beyond, the backlog is estimated (see the module docs).
const COUNTED: i64 = 10_000;

/// Measures one outbox's backlog.
pub(super) struct Backlog {
    pool: PgPool,
    /// The `outbox` label: the schema.
    label: String,
    sql: std::sync::Arc<str>,
}

impl Backlog {
    pub(super) fn new(shared: &Shared) -> Backlog {
        let table = shared.schema.table("outbox");
        let sql = format!(
            "SELECT \
               (SELECT count(*) FROM (SELECT 1 FROM {table} WHERE published_at IS NULL \
                  LIMIT {COUNTED}) counted), \
               (SELECT max(position) - min(position) + 1 FROM {table} \
                  WHERE published_at IS NULL), \
               (SELECT GREATEST(EXTRACT(EPOCH FROM now() - created_at), 0)::float8 FROM {table} \
                  WHERE published_at IS NULL ORDER BY position LIMIT 1)"
        )
        .into();
        Backlog {
            pool: shared.pool.clone(),
            label: shared.schema.as_str().to_string(),
            sql,
        }
    }

    /// Measures now and then every [`SAMPLE_EVERY`] until `stop`.
    pub(super) async fn run(&self, stop: &CancellationToken) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                Ok((pending, oldest_age)) => {
                    let outbox = self.label.clone();
                    metrics::gauge!(OUTBOX_PENDING, "outbox" => outbox.clone()).set(pending as f64);
                    metrics::gauge!(OUTBOX_OLDEST_AGE, "outbox" => outbox).set(oldest_age);
                }
                Err(error) => {
                    tracing::debug!(target: "catga", outbox = %self.label, error = %error,
                        "outbox relay: could not measure the backlog; the gauges keep their last values");
                }
            }
        }
    }

    /// The backlog (rows, exact or estimated) and the oldest row's age in seconds.
    async fn measure(&self) -> Result<(i64, f64), sqlx::Error> {
        let (counted, span, oldest_age): (i64, Option<i64>, Option<f64>) =
            sqlx::query_as(crate::schema::sql(&self.sql))
                .fetch_one(&self.pool)
                .await?;
        Ok((pending(counted, span), oldest_age.unwrap_or(0.0)))
    }
}

/// The backlog from the capped count and the span of positions: the count while it is below
/// the cap, else the span (at least the count).
fn pending(counted: i64, span: Option<i64>) -> i64 {
    if counted < COUNTED {
        counted
    } else {
        span.unwrap_or(counted).max(counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_exact_below_the_cap_and_the_span_beyond() {
        assert_eq!(pending(0, None), 0);
        assert_eq!(pending(7, Some(12)), 7, "below the cap the count is exact");
        assert_eq!(pending(COUNTED, Some(250_000)), 250_000);
        assert_eq!(
            pending(COUNTED, Some(COUNTED - 1)),
            COUNTED,
            "never below what was counted"
        );
        assert_eq!(pending(COUNTED, None), COUNTED);
    }
}
