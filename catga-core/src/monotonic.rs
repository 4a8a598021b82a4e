//! Time as nanoseconds that fit an atomic (deadlines, circuit breakers, rate limits). It
//! follows Tokio's clock, so tests under `tokio::time::pause()` control it.
//!
//! Instants are stored as an offset from a process-wide base, shifted by 2^62 so that an
//! instant *before* the base is representable too: a paused Tokio clock can sit earlier than a
//! base taken later by another runtime, and must not collapse onto it.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The base's encoding; 0 stays free to mean "unset".
const ORIGIN: u64 = 1 << 62;

fn base() -> Instant {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    Instant::from_std(*BASE.get_or_init(std::time::Instant::now))
}

/// `at`, encoded (never 0).
pub(crate) fn nanos(at: Instant) -> u64 {
    let base = base();
    if at >= base {
        ORIGIN.saturating_add(duration_nanos(at - base))
    } else {
        ORIGIN.saturating_sub(duration_nanos(base - at)).max(1)
    }
}

/// Now, encoded.
pub(crate) fn now_nanos() -> u64 {
    nanos(Instant::now())
}

/// The instant an encoding stands for (0 has none).
pub(crate) fn instant(nanos: u64) -> Option<Instant> {
    let base = base();
    match nanos {
        0 => None,
        n if n >= ORIGIN => Some(base + Duration::from_nanos(n - ORIGIN)),
        n => base
            .checked_sub(Duration::from_nanos(ORIGIN - n))
            .or(Some(base)),
    }
}

/// A duration as nanoseconds, saturating.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_before_and_after_the_base_round_trip_in_order() {
        let now = Instant::now();
        let earlier = now - Duration::from_secs(3600);
        let later = now + Duration::from_secs(3600);
        let (e, n, l) = (nanos(earlier), nanos(now), nanos(later));
        assert!(0 < e && e < n && n < l);
        assert_eq!(instant(e), Some(earlier));
        assert_eq!(instant(l), Some(later));
        assert_eq!(instant(0), None);
    }
}
