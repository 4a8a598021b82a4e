//! Where a generator reads the time: the system's wall clock, or a clock a test moves by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall clock with millisecond resolution, as a [`SnowflakeGenerator`](super::SnowflakeGenerator)
/// reads it.
///
/// [`SystemClock`] is the default. Tests inject their own (such as [`ManualClock`]) to move time
/// forwards and backwards deterministically. A clock may go backwards; the generator decides what
/// to do about it. A generator that has to wait (for the next millisecond, or for a clock that
/// went back to catch up) reads the clock again until it has moved on, so a clock that never
/// moves makes it wait for ever.
pub trait Clock {
    /// Milliseconds since the Unix epoch (1970-01-01T00:00:00Z), now.
    fn unix_millis(&self) -> u64;
}

/// The system's wall clock ([`SystemTime::now`]); 0 if it reads before 1970.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn unix_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis)
    }
}

/// A clock that only moves when told to, for tests. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use catga_core::id::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.unix_millis(), 1_005);
/// clock.rewind(Duration::from_millis(10));
/// assert_eq!(clock.unix_millis(), 995);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `unix_millis` milliseconds since the Unix epoch.
    pub fn new(unix_millis: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(unix_millis)),
        }
    }

    /// A clock stopped at `time` (at 0 if `time` is before 1970).
    pub fn at(time: SystemTime) -> Self {
        ManualClock::new(time.duration_since(UNIX_EPOCH).map_or(0, millis))
    }

    /// Sets the time, in milliseconds since the Unix epoch.
    pub fn set(&self, unix_millis: u64) {
        self.now.store(unix_millis, Ordering::SeqCst);
    }

    /// Moves the time forwards by whole milliseconds (saturating).
    pub fn advance(&self, by: Duration) {
        let by = millis(by);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Moves the time backwards by whole milliseconds (saturating at the Unix epoch).
    pub fn rewind(&self, by: Duration) {
        let by = millis(by);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_sub(by))
            });
    }
}

impl Clock for ManualClock {
    fn unix_millis(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn unix_millis(&self) -> u64 {
        (**self).unix_millis()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn unix_millis(&self) -> u64 {
        (**self).unix_millis()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    #[inline]
    fn unix_millis(&self) -> u64 {
        (**self).unix_millis()
    }
}

/// Whole milliseconds in `d`, saturating at `u64::MAX`. Cheaper than `as_millis` (no `u128`).
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(d.subsec_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_agrees_with_system_time() {
        let before = millis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let read = SystemClock.unix_millis();
        let after = millis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        assert!(
            before <= read && read <= after,
            "{before} <= {read} <= {after}"
        );
    }

    #[test]
    fn manual_clock_saturates() {
        let clock = ManualClock::new(3);
        clock.rewind(Duration::from_millis(10));
        assert_eq!(clock.unix_millis(), 0);
        clock.set(u64::MAX - 1);
        clock.advance(Duration::from_millis(10));
        assert_eq!(clock.unix_millis(), u64::MAX);
    }
}
