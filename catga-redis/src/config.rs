//! The transport's settings, their defaults, and the rules [`RedisConnect`](crate::RedisConnect)
//! checks them against before it connects.
//!
//! The builder only records what it is given; awaiting it checks every option here, before any
//! I/O, and refuses the first bad one with [`ConnectError::InvalidOption`]. Nothing is clamped:
//! a value the transport cannot use as given is an error, never silently another value.

use std::time::Duration;

use catga_core::transport::options::{self, InvalidOption};

use crate::error::ConnectError;

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

/// The shortest `ack_wait`: the claimer looks for stuck entries every quarter of it, so
/// shorter would have it spin.
pub(crate) const MIN_ACK_WAIT: Duration = Duration::from_millis(200);

/// The shortest `fetch_wait`: shorter turns waiting for entries into polling the server (and
/// `BLOCK 0` would wait for ever).
pub(crate) const MIN_FETCH_WAIT: Duration = Duration::from_millis(10);

/// The shortest `forget_idle`: the claimer also forgets dead consumers every half of it, so
/// shorter would have it spin.
pub(crate) const MIN_FORGET_IDLE: Duration = Duration::from_millis(100);

/// The shortest `reply_ttl` and `response_timeout`: Redis counts them in whole milliseconds,
/// and an expiry of 0 deletes the reply at once.
pub(crate) const MIN_MILLIS: Duration = Duration::from_millis(1);

/// Every setting of a [`RedisTransport`](crate::RedisTransport); see the builder's methods for
/// what each means.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub prefix: String,
    /// The consumer name of this process's instance, or `None` for a random one per `serve()`.
    pub instance: Option<String>,
    pub max_len: Option<usize>,
    pub fetch_wait: Duration,
    pub batch: usize,
    pub ack_wait: Duration,
    pub forget_idle: Duration,
    pub max_deliveries: u32,
    /// The delays before redelivering a failed event, by attempt (the last one repeats).
    pub backoff: Vec<Duration>,
    pub max_payload: usize,
    pub start: StartFrom,
    pub reply_ttl: Duration,
    pub response_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: "catga".to_string(),
            instance: None,
            max_len: Some(100_000),
            fetch_wait: Duration::from_secs(2),
            batch: 64,
            ack_wait: Duration::from_secs(30),
            forget_idle: Duration::from_secs(5 * 60),
            max_deliveries: 5,
            backoff: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(10),
            ],
            max_payload: 1 << 20,
            start: StartFrom::New,
            reply_ttl: Duration::from_secs(60),
            response_timeout: Duration::from_secs(5),
        }
    }
}

/// An option refused with `reason`, its value shown as `value`.
fn invalid(option: &'static str, value: String, reason: &'static str) -> ConnectError {
    InvalidOption::new(option, value, reason).into()
}

/// Checks a key prefix: not empty, and without whitespace, control characters or the glob
/// characters `* ? [ ] \`, so `SCAN … MATCH {prefix}:*` finds exactly this prefix's keys and
/// `redis-cli` takes them unquoted; without braces, which would change which Redis Cluster
/// slot (hash tag) a key lands in. The transport and the stores share it.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err(
            "a key prefix keeps applications apart on one server: it cannot be empty\n\
             help: use a name such as `catga` or `shop:prod`",
        );
    }
    let bad = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\' | '{' | '}')
    };
    if prefix.chars().any(bad) {
        return Err(
            "a key prefix cannot hold whitespace, control characters, braces or the glob \
             characters `* ? [ ] \\`\nhelp: use a name such as `catga` or `shop:prod`",
        );
    }
    Ok(())
}

impl Config {
    /// Checks every option, in the order the builder lists them, before anything connects.
    ///
    /// # Errors
    /// [`ConnectError::InvalidOption`] for the first option the transport cannot use.
    pub fn check(&self) -> Result<(), ConnectError> {
        check_prefix(&self.prefix)
            .map_err(|reason| invalid("prefix", format!("{:?}", self.prefix), reason))?;
        if let Some(name) = &self.instance
            && name.trim().is_empty()
        {
            return Err(invalid(
                "instance",
                format!("{name:?}"),
                "a blank name, most likely a variable meant to hold it (a pod name, a hostname) \
                 was unset\nhelp: name the instance after something unique among the service's \
                 live instances, such as its pod name or hostname, or leave `instance` unset for \
                 a random name",
            ));
        }
        if self.max_len == Some(0) {
            return Err(invalid(
                "max_len",
                "0".to_string(),
                "a stream trimmed to no entries would lose every message\nhelp: use `untrimmed()` \
                 to keep every entry",
            ));
        }
        options::check_max_deliveries(self.max_deliveries)?;
        options::check_backoff(&self.backoff)?;
        options::check_duration(
            "ack_wait",
            self.ack_wait,
            MIN_ACK_WAIT,
            "shorter than 200 ms: the claimer looks for stuck entries every quarter of it",
        )?;
        options::check_batch(self.batch)?;
        options::check_duration(
            "fetch_wait",
            self.fetch_wait,
            MIN_FETCH_WAIT,
            "shorter than 10 ms: waiting for messages would become polling the server",
        )?;
        options::check_duration(
            "forget_idle",
            self.forget_idle,
            MIN_FORGET_IDLE,
            "shorter than 100 ms: the claimer looks for consumers to forget every half of it",
        )?;
        if self.forget_idle <= self.fetch_wait {
            // Either option may be the one set: the value names both.
            return Err(invalid(
                "forget_idle",
                format!(
                    "{:?} (with `fetch_wait` {:?})",
                    self.forget_idle, self.fetch_wait
                ),
                "not longer than `fetch_wait`: a live instance is idle for up to `fetch_wait` \
                 between reads, and would be forgotten\nhelp: shorten `fetch_wait` or lengthen \
                 `forget_idle` (5 min unless set); keep `forget_idle` well above `fetch_wait`",
            ));
        }
        options::check_duration(
            "response_timeout",
            self.response_timeout,
            MIN_MILLIS,
            "shorter than 1 ms: no server answers that fast",
        )?;
        if self.max_payload == 0 {
            return Err(invalid(
                "max_payload",
                "0".to_string(),
                "every message would be refused as too large",
            ));
        }
        options::check_duration(
            "reply_ttl",
            self.reply_ttl,
            MIN_MILLIS,
            "shorter than 1 ms: Redis counts expiries in whole milliseconds, and 0 deletes the \
             reply at once",
        )?;
        Ok(())
    }

    /// The delay before delivery number `attempt + 1` of an event whose delivery `attempt`
    /// failed (attempts count from 1): the backoff's step for that attempt, its last step
    /// once the attempts outnumber the steps.
    pub fn redelivery_delay(&self, attempt: u32) -> Duration {
        options::redelivery_delay(&self.backoff, attempt)
    }

    /// How often the claimer looks for stuck entries and for consumers to forget: every
    /// quarter of the acknowledgement wait, so the entries of an instance that died are taken
    /// over at most about 1.25 `ack_wait` after it read them, and every half of the forget
    /// idle time, so a dead consumer stays listed at most about one and a half forget idle
    /// times; seldom enough to cost nothing. One cycle does both, so it follows the more
    /// frequent of the two. The checks keep it at 50 ms or more ([`MIN_ACK_WAIT`] / 4,
    /// [`MIN_FORGET_IDLE`] / 2).
    pub fn claim_interval(&self) -> Duration {
        (self.ack_wait / 4).min(self.forget_idle / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claimer_cycles_often_enough_for_both_idle_times() {
        let mut config = Config::default();
        assert_eq!(config.claim_interval(), Duration::from_millis(7_500));
        config.ack_wait = Duration::from_secs(2);
        assert_eq!(config.claim_interval(), Duration::from_millis(500));
        config.forget_idle = Duration::from_millis(400);
        assert_eq!(config.claim_interval(), Duration::from_millis(200));
        config.ack_wait = MIN_ACK_WAIT;
        config.forget_idle = MIN_FORGET_IDLE;
        config.fetch_wait = MIN_FETCH_WAIT;
        assert!(config.check().is_ok());
        assert_eq!(config.claim_interval(), Duration::from_millis(50));
    }

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
    }
}
