//! Every metric catga records, with its type, unit and help text: registered with the
//! recorder so `/metrics` has `# HELP` and `# TYPE` lines (docs/observability.md has the
//! same table with the labels).

use catga_core::telemetry::metric;
use metrics::Unit;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: name, kind, unit, help.
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) unit: Unit,
    pub(crate) help: &'static str,
}

const fn entry(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Entry {
    Entry {
        name,
        kind,
        unit,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// catga's metrics: the messaging instruments of catga-core's `telemetry::metric`, then the
/// behaviours', the cluster's and the stores' `catga_*` counters and gauges.
pub(crate) const CATALOG: &[Entry] = &[
    entry(
        metric::CLIENT_OPERATION_DURATION,
        Histogram,
        Unit::Seconds,
        "Time to hand a message to a transport: an event until the broker took it, a request until its reply came",
    ),
    entry(
        metric::CLIENT_SENT_MESSAGES,
        Counter,
        Unit::Count,
        "Messages handed to a transport",
    ),
    entry(
        metric::PROCESS_DURATION,
        Histogram,
        Unit::Seconds,
        "Time to process a delivery from a transport, from its arrival until it was settled or answered",
    ),
    entry(
        metric::CLIENT_CONSUMED_MESSAGES,
        Counter,
        Unit::Count,
        "Deliveries from a transport processed",
    ),
    entry(
        metric::LEADER,
        Gauge,
        Unit::Count,
        "1 while this process holds the lease it elects on, else 0",
    ),
    entry(
        metric::LEADER_EPOCH,
        Gauge,
        Unit::Count,
        "Fencing token (epoch) of the lease this process holds",
    ),
    entry(
        "catga_handler_panics_total",
        Counter,
        Unit::Count,
        "Handlers that panicked (each became a typed failure)",
    ),
    entry(
        "catga_dead_letters_total",
        Counter,
        Unit::Count,
        "Messages given up on and kept in the dead-letter store",
    ),
    entry(
        "catga_dead_letter_replays_total",
        Counter,
        Unit::Count,
        "Dead letters replayed",
    ),
    entry(
        "catga_follow_up_failures_total",
        Counter,
        Unit::Count,
        "Events queued by a handler whose publishing or handling failed afterwards",
    ),
    entry(
        "catga_idempotency_hits_total",
        Counter,
        Unit::Count,
        "Messages answered from the idempotency store (seen before)",
    ),
    entry(
        "catga_idempotency_misses_total",
        Counter,
        Unit::Count,
        "Messages not in the idempotency store (handled)",
    ),
    entry(
        "catga_idempotency_waits_total",
        Counter,
        Unit::Count,
        "Messages that waited for the same message in flight elsewhere",
    ),
    entry(
        "catga_cache_hits_total",
        Counter,
        Unit::Count,
        "Queries answered from the cache",
    ),
    entry(
        "catga_cache_misses_total",
        Counter,
        Unit::Count,
        "Queries not in the cache (handled)",
    ),
    entry(
        "catga_cache_invalidations_total",
        Counter,
        Unit::Count,
        "Cache entries invalidated",
    ),
    entry(
        "catga_concurrency_limit_shed_total",
        Counter,
        Unit::Count,
        "Messages refused because the concurrency limit's queue was full",
    ),
    entry(
        "catga_concurrency_limit_queue_depth",
        Gauge,
        Unit::Count,
        "Messages waiting for a concurrency-limit slot",
    ),
    entry(
        "catga_rate_limit_waits_total",
        Counter,
        Unit::Count,
        "Messages delayed by the rate limit",
    ),
    entry(
        "catga_rate_limit_rejections_total",
        Counter,
        Unit::Count,
        "Messages refused by the rate limit",
    ),
    entry(
        "catga_circuit_breaker_transitions_total",
        Counter,
        Unit::Count,
        "Circuit breaker state changes, by the state entered",
    ),
    entry(
        "catga_circuit_breaker_state",
        Gauge,
        Unit::Count,
        "Circuit breaker state: 0 closed, 1 open, 2 half open",
    ),
    entry(
        "catga_circuit_breaker_rejections_total",
        Counter,
        Unit::Count,
        "Messages refused while the circuit was open",
    ),
    entry(
        "catga_scheduled_fired_total",
        Counter,
        Unit::Count,
        "Scheduled messages fired",
    ),
    entry(
        "catga_scheduled_lateness_seconds",
        Histogram,
        Unit::Seconds,
        "How late a scheduled message fired, after its due time",
    ),
    entry(
        "catga_outbox_written_total",
        Counter,
        Unit::Count,
        "Messages written to the outbox in a committed transaction",
    ),
    entry(
        "catga_outbox_published_total",
        Counter,
        Unit::Count,
        "Outbox messages handed to the transport by the relay",
    ),
    entry(
        "catga_inbox_duplicates_total",
        Counter,
        Unit::Count,
        "Deliveries the inbox recognised as already processed",
    ),
    entry(
        "http_server_request_duration_seconds",
        Histogram,
        Unit::Seconds,
        "Time to answer an HTTP request on a catga-axum command or query route",
    ),
    entry(
        "catga_retries_total",
        Counter,
        Unit::Count,
        "Attempts the Retry behaviour made again after a retryable failure",
    ),
    // The adapters' gauges (catga-postgres and catga-redis `outbox::OUTBOX_*`, catga-nats and
    // catga-redis `CONSUMER_*`): named here, since this crate depends on no adapter.
    entry(
        "catga_outbox_pending",
        Gauge,
        Unit::Count,
        "Outbox messages not yet published, as the relay last measured (take max over instances)",
    ),
    entry(
        "catga_outbox_oldest_age_seconds",
        Gauge,
        Unit::Seconds,
        "Age of the oldest unpublished outbox message, 0 when none waits",
    ),
    entry(
        "catga_consumer_pending",
        Gauge,
        Unit::Count,
        "Messages on a consumer's stream not yet delivered to its group",
    ),
    entry(
        "catga_consumer_ack_pending",
        Gauge,
        Unit::Count,
        "Messages delivered to a consumer's group and not yet acknowledged",
    ),
];

/// Registers every entry's description and unit with the current recorder (the global one,
/// or a local one set around the call).
pub(crate) fn describe() {
    for entry in CATALOG {
        match entry.kind {
            Counter => metrics::describe_counter!(entry.name, entry.unit, entry.help),
            Gauge => metrics::describe_gauge!(entry.name, entry.unit, entry.help),
            Histogram => metrics::describe_histogram!(entry.name, entry.unit, entry.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for entry in CATALOG {
            assert!(seen.insert(entry.name), "{} twice", entry.name);
            match entry.kind {
                Counter => assert!(entry.name.ends_with("_total"), "{}", entry.name),
                Histogram => assert!(entry.name.ends_with("_seconds"), "{}", entry.name),
                Gauge => assert!(!entry.name.ends_with("_total"), "{}", entry.name),
            }
            assert_eq!(
                entry.unit == Unit::Seconds,
                entry.name.ends_with("_seconds")
            );
            assert!(!entry.help.ends_with('.'), "{}", entry.name);
        }
    }
}
