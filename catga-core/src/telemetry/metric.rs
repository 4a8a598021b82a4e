//! The names of the instruments catga records through the `metrics` facade, with their units.
//!
//! The messaging instruments are OpenTelemetry's
//! (<https://opentelemetry.io/docs/specs/semconv/messaging/messaging-metrics/>), spelled as
//! Prometheus names the way OpenTelemetry's Prometheus compatibility rules do (dots to
//! underscores, the unit as a suffix, `_total` on counters). docs/observability.md lists every
//! metric catga records, with its labels.

/// Histogram, seconds: how long a message took to hand to the transport (an event until the
/// broker took it; a request until its reply came). OpenTelemetry
/// `messaging.client.operation.duration`. Labels: `messaging_system`,
/// `messaging_destination_name`, `messaging_operation_name` (`publish`, `send`), `error_type`
/// on failure.
pub const CLIENT_OPERATION_DURATION: &str = "messaging_client_operation_duration_seconds";

/// Counter: messages handed to a transport. OpenTelemetry `messaging.client.sent.messages`.
/// Labels as [`CLIENT_OPERATION_DURATION`].
pub const CLIENT_SENT_MESSAGES: &str = "messaging_client_sent_messages_total";

/// Histogram, seconds: how long a delivery took to process, from its arrival until it was
/// settled or answered. OpenTelemetry `messaging.process.duration`. Labels:
/// `messaging_system`, `messaging_destination_name`, `messaging_operation_name` (`process`),
/// `error_type` on failure.
pub const PROCESS_DURATION: &str = "messaging_process_duration_seconds";

/// Counter: deliveries processed. OpenTelemetry `messaging.client.consumed.messages`. Labels
/// as [`PROCESS_DURATION`].
pub const CLIENT_CONSUMED_MESSAGES: &str = "messaging_client_consumed_messages_total";

/// Gauge: 1 while this process holds the lease it elects on, else 0. Label: `lease`.
pub const LEADER: &str = "catga_leader";

/// Gauge: the fencing token of the lease this process holds (the lease's epoch); unchanged
/// while it follows. Label: `lease`.
pub const LEADER_EPOCH: &str = "catga_leader_epoch";

/// Histogram bucket boundaries, in seconds, for catga's durations: from 100 µs to 10 s, about
/// three per decade, so a sub-millisecond in-process dispatch and a millisecond broker round
/// trip fall in different buckets. (The conventions' advisory boundaries start at 5 ms and
/// would put every local call in the first bucket.)
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
