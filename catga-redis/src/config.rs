//! The transport's settings, with their defaults, as the builder fills them in.

use std::time::Duration;

/// Where a service's consumer group starts reading a stream when the group is created (the
/// first time any instance of the service serves it). Later starts resume where the group
/// left off, whatever this says. A group that vanishes while an instance serves (a server
/// that lost its data) is created again after the last entry that instance saw, not here, so
/// nothing added since is skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// Only entries added after the group was created (`$`): a new service does not replay
    /// history. The default.
    #[default]
    New,
    /// Every entry the stream still holds (`0`): a new service catches up on what was
    /// published before it existed, as far as trimming kept it.
    Beginning,
}

impl StartFrom {
    /// The id `XGROUP CREATE` takes.
    pub(crate) fn id(self) -> &'static str {
        match self {
            StartFrom::New => "$",
            StartFrom::Beginning => "0",
        }
    }
}

/// Every setting of a [`RedisTransport`](crate::RedisTransport); see the builder's methods for
/// what each means.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub key_prefix: String,
    /// The consumer name of this process's instance, or `None` for a random one per `serve()`.
    pub instance: Option<String>,
    pub max_len: Option<usize>,
    pub block: Duration,
    pub batch: usize,
    pub claim_idle: Duration,
    pub forget_idle: Duration,
    pub max_deliveries: u32,
    pub redelivery_delay: Duration,
    pub max_payload: usize,
    pub start: StartFrom,
    pub reply_ttl: Duration,
    pub response_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            key_prefix: "catga".to_string(),
            instance: None,
            max_len: Some(100_000),
            block: Duration::from_secs(2),
            batch: 64,
            claim_idle: Duration::from_secs(30),
            forget_idle: Duration::from_secs(5 * 60),
            max_deliveries: 5,
            redelivery_delay: Duration::from_millis(500),
            max_payload: 1 << 20,
            start: StartFrom::New,
            reply_ttl: Duration::from_secs(60),
            response_timeout: Duration::from_secs(5),
        }
    }
}

/// The claimer's shortest cycle, so tiny idle times cannot make it spin.
const MIN_CYCLE: Duration = Duration::from_millis(20);

impl Config {
    /// How often the claimer looks for stuck entries and for consumers to forget: every
    /// quarter of the claim idle time, so the entries of an instance that died are taken over
    /// at most about 1.25 claim idle times after it read them, and every half of the forget
    /// idle time, so a dead consumer stays listed at most about one and a half forget idle
    /// times; seldom enough to cost nothing. One cycle does both, so it follows the more
    /// frequent of the two.
    pub fn claim_interval(&self) -> Duration {
        (self.claim_idle / 4)
            .min(self.forget_idle / 2)
            .max(MIN_CYCLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claimer_cycles_often_enough_for_both_idle_times_but_not_too_often() {
        let mut config = Config::default();
        assert_eq!(config.claim_interval(), Duration::from_millis(7_500));
        config.claim_idle = Duration::from_secs(2);
        assert_eq!(config.claim_interval(), Duration::from_millis(500));
        config.forget_idle = Duration::from_millis(400);
        assert_eq!(config.claim_interval(), Duration::from_millis(200));
        config.claim_idle = Duration::from_millis(1);
        assert_eq!(config.claim_interval(), MIN_CYCLE);
    }
}
