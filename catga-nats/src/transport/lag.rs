//! How far behind a service's durable consumers are, as gauges.
//!
//! While an instance serves, a task of its own asks the server for the state of each durable
//! consumer it pulls from every [`SAMPLE_EVERY`] (`CONSUMER.INFO`: one JetStream API request
//! per consumer, all at once), and sets [`CONSUMER_PENDING`] from `num_pending` and
//! [`CONSUMER_ACK_PENDING`] from `num_ack_pending`. It never holds up a pull or a handler, and
//! it stops with the other loops when serving stops. A consumer the server could not describe
//! (not connected, gone until the consumer loop creates it again) is logged at `debug` and
//! its gauges are left as they were.
//!
//! Every serving instance of a service reports the same durable consumer, so a dashboard takes
//! the maximum over instances, not the sum.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;

/// Gauge, messages: events a service's consumer has not been delivered yet (JetStream's
/// `num_pending` for its durable consumer). Labels: `messaging_system` (`nats`, or `redis`
/// from catga-redis), `messaging_consumer_group_name` (the service; its durable consumer is
/// `{service}-{wire name}`), `messaging_destination_name` (the event's wire name, as in
/// catga-core's messaging metrics). Sampled every 5 s by each serving instance with one
/// `CONSUMER.INFO` request per consumer; instances report the same value, so aggregate with
/// `max`, not `sum`.
pub const CONSUMER_PENDING: &str = "catga_consumer_pending";

/// Gauge, messages: events delivered to a service's consumer and not acknowledged yet, being
/// handled or waiting for a redelivery (JetStream's `num_ack_pending`). Labels and sampling as
/// [`CONSUMER_PENDING`].
pub const CONSUMER_ACK_PENDING: &str = "catga_consumer_ack_pending";

/// How often a serving instance samples its consumers.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// One durable consumer to sample, with its labels.
pub(crate) struct Sampled {
    /// The durable consumer's name.
    pub durable: String,
    /// The service: `messaging_consumer_group_name`.
    pub service: String,
    /// The event's wire name: `messaging_destination_name`.
    pub event: Arc<str>,
}

/// Samples `consumers` every [`SAMPLE_EVERY`] until `stop`.
pub(crate) async fn run(shared: Arc<Shared>, consumers: Vec<Sampled>, stop: CancellationToken) {
    if consumers.is_empty() {
        return;
    }
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let sampled = futures::future::join_all(consumers.iter().map(|c| sample(&shared, c)));
        tokio::select! {
            () = stop.cancelled() => return,
            _ = sampled => {}
        }
    }
}

/// Asks the server for one consumer's state and sets its gauges.
async fn sample(shared: &Shared, consumer: &Sampled) {
    let info = match shared.consumer_info(&consumer.durable).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            tracing::debug!(target: "catga::nats", consumer = %consumer.durable,
                "the durable consumer is gone; its lag is not sampled until it is back");
            return;
        }
        Err(why) => {
            tracing::debug!(target: "catga::nats", consumer = %consumer.durable, why = %why,
                "could not sample the durable consumer's lag; the gauges keep their last values");
            return;
        }
    };
    let labels = [
        ("messaging_system", "nats".to_string()),
        ("messaging_consumer_group_name", consumer.service.clone()),
        ("messaging_destination_name", consumer.event.to_string()),
    ];
    metrics::gauge!(CONSUMER_PENDING, &labels).set(info.num_pending as f64);
    metrics::gauge!(CONSUMER_ACK_PENDING, &labels).set(info.num_ack_pending as f64);
}
