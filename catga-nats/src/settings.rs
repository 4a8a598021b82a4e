//! The transport's settings and their defaults.

use std::time::Duration;

/// How long the stream keeps events by default: a week, as Kafka does. Long enough for a
/// service to be down over a weekend; bounded, since the stream keeps every event that long
/// whether or not it was consumed (limits retention; see `connect.rs`).
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Everything [`Connect`](crate::Connect) configures, checked when it connects.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
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
    pub max_deliver: u32,
    /// The delays before redelivering a failed event, by attempt (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How long the server waits for an acknowledgement before redelivering.
    pub ack_wait: Duration,
    /// The most events one pull asks for.
    pub fetch_batch: usize,
    /// How long a pull waits on the server for events before it is renewed.
    pub fetch_wait: Duration,
    /// How long a publish waits for JetStream's acknowledgement.
    pub publish_timeout: Duration,
    /// The client's name, shown by the server's monitoring.
    pub connection_name: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "catga".to_string(),
            stream: None,
            duplicate_window: Duration::from_secs(120),
            max_age: DEFAULT_MAX_AGE,
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(10),
            ],
            ack_wait: Duration::from_secs(30),
            fetch_batch: 128,
            fetch_wait: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            connection_name: None,
        }
    }
}

impl Settings {
    /// The delay before delivery number `attempt + 1` of an event whose delivery `attempt`
    /// failed (attempts count from 1).
    pub fn redelivery_delay(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or_default()
    }

    /// How often a running handler tells the server it is still working, so a slow handler's
    /// event is not redelivered to another instance while it runs.
    pub fn progress_every(&self) -> Duration {
        (self.ack_wait / 2).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_is_taken_by_attempt_and_its_last_step_repeats() {
        let settings = Settings {
            backoff: vec![Duration::from_millis(10), Duration::from_millis(20)],
            ..Settings::default()
        };
        assert_eq!(settings.redelivery_delay(1), Duration::from_millis(10));
        assert_eq!(settings.redelivery_delay(2), Duration::from_millis(20));
        assert_eq!(settings.redelivery_delay(9), Duration::from_millis(20));
        let none = Settings {
            backoff: Vec::new(),
            ..Settings::default()
        };
        assert_eq!(none.redelivery_delay(1), Duration::ZERO);
    }
}
