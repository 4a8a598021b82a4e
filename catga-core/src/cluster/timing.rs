//! The timing of an election, checked before it starts: a TTL no store can answer within, or
//! an interval of zero, would make the elector spin.

use std::time::Duration;

/// The shortest lease TTL [`Leadership`](super::Leadership) accepts: below it a store's round
/// trip (and a follower's retry, a tenth of the TTL by default) leaves no room to renew.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(100);

/// Why a [`Leadership`](super::Leadership)'s timing cannot be used
/// ([`try_start`](super::Leadership::try_start)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTiming {
    /// The TTL is below [`MIN_LEASE_TTL`].
    #[error(
        "the lease's TTL {ttl:?} is below {MIN_LEASE_TTL:?}: no renewal could keep it\nhelp: use a TTL of a few seconds, e.g. `.ttl(Duration::from_secs(5))`"
    )]
    TtlTooShort {
        /// The TTL given.
        ttl: Duration,
    },
    /// The leader's renewal interval is zero or not below the TTL.
    #[error(
        "renew_every {every:?} must be above zero and below the TTL {ttl:?}, or the lease runs out between renewals\nhelp: leave it unset (a third of the TTL)"
    )]
    RenewEvery {
        /// The interval given.
        every: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A follower's retry interval is zero.
    #[error(
        "retry_every must be above zero, or a follower asks the store without pause\nhelp: leave it unset (a tenth of the TTL)"
    )]
    RetryEvery,
}

/// The intervals of an election with TTL `ttl`: (renew every, retry every), or why not.
pub(super) fn intervals(
    ttl: Duration,
    renew_every: Option<Duration>,
    retry_every: Option<Duration>,
) -> Result<(Duration, Duration), InvalidTiming> {
    if ttl < MIN_LEASE_TTL {
        return Err(InvalidTiming::TtlTooShort { ttl });
    }
    let renew = renew_every.unwrap_or(ttl / 3);
    if renew.is_zero() || renew >= ttl {
        return Err(InvalidTiming::RenewEvery { every: renew, ttl });
    }
    let retry = retry_every.unwrap_or(ttl / 10);
    if retry.is_zero() {
        return Err(InvalidTiming::RetryEvery);
    }
    Ok((renew, retry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_ttl_and_what_would_spin_is_refused() {
        let ttl = Duration::from_secs(3);
        assert_eq!(
            intervals(ttl, None, None),
            Ok((Duration::from_secs(1), Duration::from_millis(300)))
        );
        assert_eq!(
            intervals(Duration::ZERO, None, None),
            Err(InvalidTiming::TtlTooShort {
                ttl: Duration::ZERO
            })
        );
        assert_eq!(
            intervals(ttl, Some(ttl), None),
            Err(InvalidTiming::RenewEvery { every: ttl, ttl })
        );
        assert_eq!(
            intervals(ttl, Some(Duration::ZERO), None),
            Err(InvalidTiming::RenewEvery {
                every: Duration::ZERO,
                ttl
            })
        );
        assert_eq!(
            intervals(ttl, None, Some(Duration::ZERO)),
            Err(InvalidTiming::RetryEvery)
        );
    }
}
