//! The rules for the options every broker transport shares, in one place.
//!
//! A transport's builder records its options and checks them all before any I/O; a value it
//! cannot use is refused, never clamped. The options both catga-nats and catga-redis have
//! (`max_deliveries`, `backoff`, `batch`, and durations) are checked here, so they are refused
//! with the same words everywhere; each adapter turns an [`InvalidOption`] into its own
//! `ConnectError::InvalidOption` and adds the rules only its broker needs.

use std::time::Duration;

/// The longest duration an option takes: 100 years. Longer is a mistake (a unit mixed up),
/// not a setting, and would overflow the brokers' millisecond and nanosecond counters.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// An option a transport cannot use: which, the value as Rust writes it (`0`, `[]`, `0ns`),
/// and why, with what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value} for `{option}`: {reason}")]
pub struct InvalidOption {
    /// The builder method's name.
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// Why it cannot be used.
    pub reason: &'static str,
}

impl InvalidOption {
    /// `option` refused with `reason`, its value shown as `value`.
    pub fn new(option: &'static str, value: impl Into<String>, reason: &'static str) -> Self {
        InvalidOption {
            option,
            value: value.into(),
            reason,
        }
    }
}

/// `max_deliveries`: at least one delivery.
///
/// # Errors
/// [`InvalidOption`] for zero.
pub fn check_max_deliveries(n: u32) -> Result<(), InvalidOption> {
    if n == 0 {
        return Err(InvalidOption::new(
            "max_deliveries",
            "0",
            "an event must be delivered at least once",
        ));
    }
    Ok(())
}

/// `backoff`: at least one delay, none longer than [`MAX_DURATION`].
///
/// # Errors
/// [`InvalidOption`] for an empty schedule or a delay over 100 years.
pub fn check_backoff(delays: &[Duration]) -> Result<(), InvalidOption> {
    if delays.is_empty() {
        return Err(InvalidOption::new(
            "backoff",
            "[]",
            "a redelivery needs a delay: give at least one (`Duration::ZERO` for none)",
        ));
    }
    delays
        .iter()
        .try_for_each(|delay| check_longest("backoff", *delay))
}

/// `batch`: at least one message per fetch.
///
/// # Errors
/// [`InvalidOption`] for zero.
pub fn check_batch(n: usize) -> Result<(), InvalidOption> {
    if n == 0 {
        return Err(InvalidOption::new(
            "batch",
            "0",
            "a fetch must ask for at least one message",
        ));
    }
    Ok(())
}

/// A duration between `min` and [`MAX_DURATION`]; `reason` says why `min`.
///
/// # Errors
/// [`InvalidOption`] below `min` (with `reason`) or over 100 years.
pub fn check_duration(
    option: &'static str,
    value: Duration,
    min: Duration,
    reason: &'static str,
) -> Result<(), InvalidOption> {
    if value < min {
        return Err(InvalidOption::new(option, format!("{value:?}"), reason));
    }
    check_longest(option, value)
}

/// A duration no longer than [`MAX_DURATION`].
///
/// # Errors
/// [`InvalidOption`] over 100 years.
pub fn check_longest(option: &'static str, value: Duration) -> Result<(), InvalidOption> {
    if value > MAX_DURATION {
        return Err(InvalidOption::new(
            option,
            format!("{value:?}"),
            "longer than 100 years, which is a mistake rather than a setting",
        ));
    }
    Ok(())
}

/// The delay before delivery `attempt + 1` of an event whose delivery `attempt` failed
/// (attempts count from 1): the schedule's step for that attempt, its last step once the
/// attempts outnumber the steps, zero for an empty schedule.
pub fn redelivery_delay(backoff: &[Duration], attempt: u32) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    backoff
        .get(index)
        .or(backoff.last())
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_rules_refuse_what_no_transport_can_use() {
        assert_eq!(
            check_max_deliveries(0).unwrap_err().option,
            "max_deliveries"
        );
        assert!(check_max_deliveries(1).is_ok());
        assert_eq!(check_backoff(&[]).unwrap_err().value, "[]");
        assert!(check_backoff(&[Duration::ZERO]).is_ok());
        assert!(check_backoff(&[MAX_DURATION + Duration::from_secs(1)]).is_err());
        assert_eq!(check_batch(0).unwrap_err().option, "batch");
        let short = check_duration(
            "fetch_wait",
            Duration::ZERO,
            Duration::from_millis(10),
            "why",
        );
        assert_eq!(
            short.unwrap_err().to_string(),
            "invalid value 0ns for `fetch_wait`: why"
        );
    }

    #[test]
    fn the_last_step_of_the_schedule_repeats() {
        let schedule = [Duration::from_millis(10), Duration::from_millis(20)];
        assert_eq!(redelivery_delay(&schedule, 1), Duration::from_millis(10));
        assert_eq!(redelivery_delay(&schedule, 2), Duration::from_millis(20));
        assert_eq!(redelivery_delay(&schedule, 9), Duration::from_millis(20));
        assert_eq!(redelivery_delay(&[], 1), Duration::ZERO);
    }
}
