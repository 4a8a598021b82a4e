//! The values of per-message behaviour settings ([`Skip`], [`Rate`]); the settings themselves
//! are [`MessagePolicy`](crate::message::MessagePolicy), part of a message's info.
//!
//! ```rust,standalone_crate
//! use catga_core::prelude::*;
//!
//! #[command(timeout = "2s", retry = 5, rate_limit = "100/s", concurrency = 8, skip(circuit_breaker))]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct ChargeCard { pub cents: u64 }
//!
//! # #[handler] async fn charge(_: ChargeCard) -> Result<(), std::io::Error> { Ok(()) }
//! # fn main() {
//! let policy = <ChargeCard as Message>::info().policy();
//! assert_eq!(policy.rate_limit.map(|r| r.count), Some(100));
//! assert!(policy.skip.contains(catga_core::policy::Skip::CIRCUIT_BREAKER));
//! # }
//! ```

use std::fmt;
use std::time::Duration;

/// A set of behaviours a message opts out of: `#[command(skip(retry, circuit_breaker))]`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Skip(u16);

impl Skip {
    /// No behaviour is skipped.
    pub const NONE: Skip = Skip(0);
    /// [`Tracing`](crate::behavior::Tracing).
    pub const TRACING: Skip = Skip(1);
    /// [`Validation`](crate::behavior::Validation).
    pub const VALIDATION: Skip = Skip(1 << 1);
    /// [`Timeout`](crate::behavior::Timeout).
    pub const TIMEOUT: Skip = Skip(1 << 2);
    /// [`Retry`](crate::behavior::Retry).
    pub const RETRY: Skip = Skip(1 << 3);
    /// [`CircuitBreaker`](crate::behavior::CircuitBreaker).
    pub const CIRCUIT_BREAKER: Skip = Skip(1 << 4);
    /// [`RateLimit`](crate::behavior::RateLimit).
    pub const RATE_LIMIT: Skip = Skip(1 << 5);
    /// [`ConcurrencyLimit`](crate::behavior::ConcurrencyLimit).
    pub const CONCURRENCY_LIMIT: Skip = Skip(1 << 6);
    /// [`Idempotency`](crate::behavior::Idempotency).
    pub const IDEMPOTENCY: Skip = Skip(1 << 7);
    /// [`Caching`](crate::behavior::Caching).
    pub const CACHING: Skip = Skip(1 << 8);
    /// [`DeadLetter`](crate::behavior::DeadLetter).
    pub const DEAD_LETTER: Skip = Skip(1 << 9);

    /// The names `skip(…)` accepts, with their flags (the macros and lints use this list).
    pub const NAMES: &'static [(&'static str, Skip)] = &[
        ("tracing", Skip::TRACING),
        ("validation", Skip::VALIDATION),
        ("timeout", Skip::TIMEOUT),
        ("retry", Skip::RETRY),
        ("circuit_breaker", Skip::CIRCUIT_BREAKER),
        ("rate_limit", Skip::RATE_LIMIT),
        ("concurrency_limit", Skip::CONCURRENCY_LIMIT),
        ("idempotency", Skip::IDEMPOTENCY),
        ("caching", Skip::CACHING),
        ("dead_letter", Skip::DEAD_LETTER),
    ];

    #[doc(hidden)]
    pub const fn from_bits(bits: u16) -> Skip {
        Skip(bits)
    }

    /// Whether every behaviour of `other` is skipped.
    #[inline]
    pub const fn contains(self, other: Skip) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    pub const fn union(self, other: Skip) -> Skip {
        Skip(self.0 | other.0)
    }
}

impl fmt::Debug for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(
                Skip::NAMES
                    .iter()
                    .filter(|(_, s)| self.contains(*s) && s.0 != 0)
                    .map(|(n, _)| n),
            )
            .finish()
    }
}

/// A rate: `count` permits per `per`. Written `"100/s"`, `"5/m"`, `"1/h"`, `"20/250ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Permits per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// `count` permits per `per`.
    pub const fn new(count: u32, per: Duration) -> Rate {
        Rate { count, per }
    }

    /// `count` per second.
    pub const fn per_second(count: u32) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }

    /// The spacing between permits at a steady rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.per)
    }
}

#[cfg(test)]
mod tests {
    use super::Skip;

    #[test]
    fn skip_names_match_the_bits_the_macros_generate() {
        let names: Vec<&str> = Skip::NAMES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, catga_lints::rules::message::SKIP_NAMES);
        for (bit, (_, flag)) in Skip::NAMES.iter().enumerate() {
            assert_eq!(*flag, Skip::from_bits(1 << bit));
        }
    }
}
