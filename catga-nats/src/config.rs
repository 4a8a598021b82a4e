//! The transport's settings, their defaults, and the rules [`NatsConnect`](crate::NatsConnect)
//! checks them against before it connects.
//!
//! The builder only records what it is given; awaiting it checks every option here, before any
//! I/O, and refuses the first bad one with [`ConnectError::InvalidOption`]. Nothing is clamped:
//! a value the transport cannot use as given is an error, never silently another value.

use std::time::Duration;

use catga_core::transport::options::{self, InvalidOption};

use crate::error::ConnectError;
use crate::subject;

/// How long the stream keeps events by default: a week, as Kafka does. Long enough for a
/// service to be down over a weekend; bounded, since the stream keeps every event that long
/// whether or not it was consumed (limits retention; see `transport/stream.rs`).
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The shortest `ack_wait`: a running handler reports progress every half of it, so shorter
/// would flood the server with progress messages.
pub(crate) const MIN_ACK_WAIT: Duration = Duration::from_millis(200);

/// The shortest `fetch_wait`: every pull that comes back empty also checks the durable
/// consumer, so shorter turns waiting for events into polling the server.
pub(crate) const MIN_FETCH_WAIT: Duration = Duration::from_millis(10);

/// The shortest `response_timeout`: timers count whole milliseconds.
pub(crate) const MIN_RESPONSE_TIMEOUT: Duration = Duration::from_millis(1);

/// Everything [`NatsConnect`](crate::NatsConnect) configures, checked when it connects.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The first token(s) of every subject.
    pub prefix: String,
    /// The events stream; `None` derives it from the prefix.
    pub stream: Option<String>,
    /// How long the server remembers message ids to drop republished events.
    pub duplicate_window: Duration,
    /// How long the stream keeps an event (its retention period); zero keeps events for good.
    pub max_age: Duration,
    /// How many times an event's handlers run for a service at most (catga's delivery budget;
    /// the server's own limit is off).
    pub max_deliveries: u32,
    /// The delays before redelivering a failed event, by attempt (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How long the server waits for an acknowledgement before redelivering.
    pub ack_wait: Duration,
    /// The most events one pull asks for.
    pub batch: usize,
    /// How long a pull waits on the server for events before it is renewed.
    pub fetch_wait: Duration,
    /// How long connecting, a publish's acknowledgement and a JetStream API call may take.
    pub response_timeout: Duration,
    /// The client's name, shown by the server's monitoring.
    pub connection_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: "catga".to_string(),
            stream: None,
            duplicate_window: Duration::from_secs(120),
            max_age: DEFAULT_MAX_AGE,
            max_deliveries: 5,
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(10),
            ],
            ack_wait: Duration::from_secs(30),
            batch: 128,
            fetch_wait: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            connection_name: None,
        }
    }
}

/// An option refused with `reason`, its value shown as `value`.
fn invalid(option: &'static str, value: String, reason: &'static str) -> ConnectError {
    InvalidOption::new(option, value, reason).into()
}

impl Config {
    /// Checks every option, in the order the builder lists them, before anything connects.
    ///
    /// # Errors
    /// [`ConnectError::InvalidOption`] for the first option the transport cannot use.
    pub fn check(&self) -> Result<(), ConnectError> {
        subject::check_prefix(&self.prefix)
            .map_err(|reason| invalid("prefix", format!("{:?}", self.prefix), reason))?;
        if let Some(name) = &self.stream {
            subject::check_stream_name(name)
                .map_err(|reason| invalid("stream", format!("{name:?}"), reason))?;
        }
        options::check_duration(
            "duplicate_window",
            self.duplicate_window,
            Duration::from_nanos(1),
            "zero would be the server's default window (2 minutes), not zero",
        )?;
        options::check_longest("max_age", self.max_age)?;
        if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
            return Err(invalid(
                "duplicate_window",
                format!("{:?}", self.duplicate_window),
                "longer than `max_age`: the server refuses to remember an event longer than it keeps it",
            ));
        }
        options::check_max_deliveries(self.max_deliveries)?;
        options::check_backoff(&self.backoff)?;
        options::check_duration(
            "ack_wait",
            self.ack_wait,
            MIN_ACK_WAIT,
            "shorter than 200 ms: a running handler reports progress every half of it",
        )?;
        options::check_batch(self.batch)?;
        options::check_duration(
            "fetch_wait",
            self.fetch_wait,
            MIN_FETCH_WAIT,
            "shorter than 10 ms: waiting for messages would become polling the server",
        )?;
        options::check_duration(
            "response_timeout",
            self.response_timeout,
            MIN_RESPONSE_TIMEOUT,
            "shorter than 1 ms: no server answers that fast",
        )?;
        Ok(())
    }

    /// The events stream: the one configured, or one derived from the prefix.
    pub fn stream_name(&self) -> String {
        match &self.stream {
            Some(name) => name.clone(),
            None => subject::default_stream_name(&self.prefix),
        }
    }

    /// The delay before delivery number `attempt + 1` of an event whose delivery `attempt`
    /// failed (attempts count from 1): the backoff's step for that attempt, its last step
    /// once the attempts outnumber the steps.
    pub fn redelivery_delay(&self, attempt: u32) -> Duration {
        options::redelivery_delay(&self.backoff, attempt)
    }

    /// How often a running handler tells the server it is still working, so a slow handler's
    /// event is not redelivered to another instance while it runs: every half `ack_wait`
    /// (at least [`MIN_ACK_WAIT`], so at least every 100 ms).
    pub fn progress_every(&self) -> Duration {
        self.ack_wait / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_is_taken_by_attempt_and_its_last_step_repeats() {
        let config = Config {
            backoff: vec![Duration::from_millis(10), Duration::from_millis(20)],
            ..Config::default()
        };
        assert_eq!(config.redelivery_delay(1), Duration::from_millis(10));
        assert_eq!(config.redelivery_delay(2), Duration::from_millis(20));
        assert_eq!(config.redelivery_delay(9), Duration::from_millis(20));
    }

    #[test]
    fn the_defaults_pass_the_checks() {
        assert!(Config::default().check().is_ok());
        assert_eq!(Config::default().stream_name(), "catga-events");
    }
}
