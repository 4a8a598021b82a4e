//! The cache's settings, their defaults, and the rules
//! [`RedisCacheConnect`](super::RedisCacheConnect) checks them against before it connects.
//! As with the transport, nothing is clamped: a value the cache cannot use is an error.

use std::time::Duration;

use catga_core::transport::options::{self, InvalidOption};

use crate::error::ConnectError;
use crate::store::{DEFAULT_READ_YOUR_WRITES, ReadFrom};

/// The shortest `timeout`: Redis answers in well under a millisecond on a healthy network,
/// but a timer cannot be shorter.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The shortest `retry_interval`: shorter turns an outage into polling the server.
pub(crate) const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// The shortest `near_ttl`: expiries are counted in milliseconds.
pub(crate) const MIN_NEAR_TTL: Duration = Duration::from_millis(1);

/// Every setting of a [`RedisCache`](super::RedisCache); see the builder's methods.
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    pub prefix: String,
    pub near_cache: bool,
    /// Entries per query.
    pub near_capacity: usize,
    pub near_ttl: Duration,
    pub timeout: Duration,
    pub retry_interval: Duration,
    /// Where lookups read.
    pub read_from: ReadFrom,
    /// How long after an invalidation of a query (made here or heard) its lookups read the
    /// primary.
    pub read_your_writes: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            prefix: "catga".to_string(),
            near_cache: true,
            near_capacity: 10_000,
            near_ttl: Duration::from_secs(10),
            timeout: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
            read_from: ReadFrom::Primary,
            read_your_writes: DEFAULT_READ_YOUR_WRITES,
        }
    }
}

fn invalid(option: &'static str, value: String, reason: &'static str) -> ConnectError {
    InvalidOption::new(option, value, reason).into()
}

/// The transport's rule for a key prefix (`RedisConnect::prefix`), so one prefix works for
/// both: not empty, no whitespace, control characters or glob characters.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err(
            "a key prefix keeps applications apart on one server: it cannot be empty\n\
             help: use a name such as `catga` or `shop:prod`",
        );
    }
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\');
    if prefix.chars().any(bad) {
        return Err(
            "a key prefix cannot hold whitespace, control characters or the glob \
             characters `* ? [ ] \\`\nhelp: use a name such as `catga` or `shop:prod`",
        );
    }
    Ok(())
}

impl CacheConfig {
    /// Checks every option, in the order the builder lists them, before anything connects.
    ///
    /// # Errors
    /// [`ConnectError::InvalidOption`] for the first option the cache cannot use.
    pub fn check(&self) -> Result<(), ConnectError> {
        check_prefix(&self.prefix)
            .map_err(|reason| invalid("prefix", format!("{:?}", self.prefix), reason))?;
        if self.near_capacity == 0 {
            return Err(invalid(
                "near_capacity",
                "0".to_string(),
                "a near-cache that holds nothing would cost a lookup for no hit\nhelp: write \
                 `near_cache(false)` to go to Redis for every lookup",
            ));
        }
        options::check_duration(
            "near_ttl",
            self.near_ttl,
            MIN_NEAR_TTL,
            "shorter than 1 ms: no entry would outlive its own insertion\nhelp: write \
             `near_cache(false)` to go to Redis for every lookup",
        )?;
        options::check_duration(
            "timeout",
            self.timeout,
            MIN_TIMEOUT,
            "shorter than 1 ms: no server answers that fast",
        )?;
        options::check_duration(
            "retry_interval",
            self.retry_interval,
            MIN_RETRY_INTERVAL,
            "shorter than 10 ms: an outage would turn into polling the server",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_bad_value_is_named() {
        assert!(CacheConfig::default().check().is_ok());
        let cases: [(&str, CacheConfig); 5] = [
            (
                "prefix",
                CacheConfig {
                    prefix: "a b".into(),
                    ..CacheConfig::default()
                },
            ),
            (
                "near_capacity",
                CacheConfig {
                    near_capacity: 0,
                    ..CacheConfig::default()
                },
            ),
            (
                "near_ttl",
                CacheConfig {
                    near_ttl: Duration::ZERO,
                    ..CacheConfig::default()
                },
            ),
            (
                "timeout",
                CacheConfig {
                    timeout: Duration::from_micros(10),
                    ..CacheConfig::default()
                },
            ),
            (
                "retry_interval",
                CacheConfig {
                    retry_interval: Duration::from_millis(1),
                    ..CacheConfig::default()
                },
            ),
        ];
        for (option, config) in cases {
            match config.check() {
                Err(ConnectError::InvalidOption { option: named, .. }) => {
                    assert_eq!(named, option);
                }
                other => panic!("{option}: {other:?}"),
            }
        }
    }
}
