//! How far behind a service's consumer groups are, as gauges.
//!
//! While an instance serves, a task of its own reads the state of the service's group on each
//! stream it serves (events' and requests') every [`SAMPLE_EVERY`] (`XINFO GROUPS`: one round
//! trip per stream, all at once, each O(groups on the stream)), and sets [`CONSUMER_PENDING`]
//! from the group's `lag` and [`CONSUMER_ACK_PENDING`] from its `pending`. It never holds up
//! a read or a handler, and stops with the reader and the claimer when serving stops.
//!
//! `lag` is Redis 7's: an older server, or one that cannot tell (entries deleted or trimmed
//! between the group's position and the stream's end), leaves [`CONSUMER_PENDING`] as it was.
//! A stream or group that could not be read is logged at `debug` and its gauges are left as
//! they were.
//!
//! Every serving instance of a service reports the same group, so a dashboard takes the
//! maximum over instances, not the sum.

use std::sync::Arc;
use std::time::Duration;

use redis::streams::StreamInfoGroupsReply;

use super::worker::Worker;
use crate::error::CommandError;

/// Gauge, entries: entries of a stream a service's consumer group has not read yet (the
/// group's `lag` in `XINFO GROUPS`, Redis 7 or later). Labels: `messaging_system` (`redis`,
/// or `nats` from catga-nats), `messaging_consumer_group_name` (the service: its group),
/// `messaging_destination_name` (the event's, command's or query's wire name, as in
/// catga-core's messaging metrics; its stream is `{prefix}:events:{name}` or
/// `{prefix}:requests:{name}`). Sampled every 5 s by each serving instance with one
/// `XINFO GROUPS` per stream; instances report the same value, so aggregate with `max`, not
/// `sum`.
pub const CONSUMER_PENDING: &str = "catga_consumer_pending";

/// Gauge, entries: entries a service's consumer group read and has not acknowledged yet,
/// being handled or waiting for a redelivery (the group's `pending`, its pending entries
/// list). Labels and sampling as [`CONSUMER_PENDING`].
pub const CONSUMER_ACK_PENDING: &str = "catga_consumer_ack_pending";

/// How often a serving instance samples its groups.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the groups of `worker`'s streams every [`SAMPLE_EVERY`] until the worker stops.
pub(crate) async fn run(worker: Arc<Worker>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = worker.stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let sampled = futures::future::join_all(worker.streams.iter().map(|s| sample(&worker, s)));
        tokio::select! {
            () = worker.stop.cancelled() => return,
            _ = sampled => {}
        }
    }
}

/// Reads the state of the service's group on `stream` and sets its gauges.
async fn sample(worker: &Worker, stream: &str) {
    let Some(route) = worker.routes.get(stream) else {
        return;
    };
    let reply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async::<StreamInfoGroupsReply>(&mut worker.shared.manager.clone())
        .await;
    let groups = match reply {
        Ok(reply) => reply.groups,
        Err(e) => {
            let error = CommandError::new("XINFO GROUPS", stream, e);
            tracing::debug!(target: "catga::redis", stream, error = &error as &dyn std::error::Error,
                "could not sample the consumer group's lag; the gauges keep their last values");
            return;
        }
    };
    let Some(group) = groups.into_iter().find(|g| g.name == worker.group) else {
        tracing::debug!(target: "catga::redis", stream, group = %worker.group,
            "the consumer group is gone; its lag is not sampled until the reader creates it again");
        return;
    };
    let labels = [
        ("messaging_system", "redis".to_string()),
        ("messaging_consumer_group_name", worker.group.clone()),
        ("messaging_destination_name", route.name.clone()),
    ];
    if let Some(lag) = group.lag {
        metrics::gauge!(CONSUMER_PENDING, &labels).set(lag as f64);
    }
    metrics::gauge!(CONSUMER_ACK_PENDING, &labels).set(group.pending as f64);
}
