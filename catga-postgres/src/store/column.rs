//! How the stores' values become column values and back: times, durations, sizes, text.
//!
//! Times travel as whole microseconds since the Unix epoch (Postgres keeps no finer), bound as
//! an `interval` added to the epoch and read back with `extract(epoch …)`, which is exact
//! (`numeric`) on Postgres 14 and later. That needs no date-time crate beside sqlx.

use std::time::{Duration, SystemTime};

use sqlx::postgres::types::PgInterval;

use crate::error::PostgresError;

/// The default of every store's `max_write_bytes`: 64 MiB in one write.
pub const DEFAULT_MAX_WRITE_BYTES: usize = 64 << 20;

/// The most any store's `max_write_bytes` accepts: 1 GiB less 1 MiB. Postgres refuses a
/// statement whose parameters add up to 1 GB or more (and a `bytea` value of 1 GB or more);
/// the MiB left is room for the other columns of the row.
pub const MAX_WRITE_BYTES: usize = (1 << 30) - (1 << 20);

/// The longest lease, TTL or age the stores compute with: 100 years. Longer durations (as
/// `Duration::MAX` for "for ever") are taken as this, so `now() + duration` stays a valid
/// `timestamptz`.
pub(crate) const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// SQL for a `timestamptz` read back as microseconds since the epoch.
pub(crate) fn micros_of(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000000)::int8")
}

/// SQL for the `timestamptz` of parameter `$n`, bound with [`since_epoch`].
pub(crate) fn timestamp_of(n: u8) -> String {
    format!("(timestamptz 'epoch' + ${n}::interval)")
}

/// `time` as an interval since the epoch, for a parameter [`timestamp_of`] reads.
///
/// # Errors
/// [`PostgresError::Unrepresentable`] for a time more than ±292,000 years from 1970.
pub(crate) fn since_epoch(
    what: &'static str,
    time: SystemTime,
) -> Result<PgInterval, PostgresError> {
    let micros = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros())
            .ok()
            .map(|m| -m),
    };
    let microseconds = micros.ok_or(PostgresError::Unrepresentable {
        what,
        reason: "the time is too far from 1970 for a Postgres timestamp",
    })?;
    Ok(PgInterval {
        months: 0,
        days: 0,
        microseconds,
    })
}

/// The time `micros` microseconds after the epoch (before it if negative).
pub(crate) fn system_time(micros: i64) -> SystemTime {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

/// `duration` as an interval, to the microsecond, at most [`LONGEST`].
pub(crate) fn interval(duration: Duration) -> PgInterval {
    let micros = duration.min(LONGEST).as_micros();
    PgInterval {
        months: 0,
        days: 0,
        // At most 100 years in microseconds, far below `i64::MAX`.
        microseconds: i64::try_from(micros).unwrap_or(i64::MAX),
    }
}

/// Checks a value for `max_write_bytes`.
///
/// # Errors
/// [`PostgresError::InvalidOption`] for 0 or more than [`MAX_WRITE_BYTES`].
pub(crate) fn write_limit(bytes: usize) -> Result<usize, PostgresError> {
    if bytes == 0 || bytes > MAX_WRITE_BYTES {
        return Err(PostgresError::InvalidOption {
            option: "max_write_bytes",
            reason: format!("{bytes} is not between 1 and {MAX_WRITE_BYTES}"),
        });
    }
    Ok(bytes)
}

/// Refuses a write of `bytes` over `limit`.
///
/// # Errors
/// [`PostgresError::TooLarge`].
pub(crate) fn fits(what: &'static str, bytes: usize, limit: usize) -> Result<(), PostgresError> {
    if bytes > limit {
        return Err(PostgresError::TooLarge { what, bytes, limit });
    }
    Ok(())
}

/// Refuses text Postgres cannot store: `text` and `jsonb` hold no NUL character.
///
/// # Errors
/// [`PostgresError::Unrepresentable`].
pub(crate) fn text(what: &'static str, value: &str) -> Result<(), PostgresError> {
    if value.contains('\0') {
        return Err(PostgresError::Unrepresentable {
            what,
            reason: "it contains a NUL character, which Postgres text cannot hold",
        });
    }
    Ok(())
}

/// A version or count as a `bigint`, if it fits.
pub(crate) fn bigint(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

/// A `bigint` read back as a version or count; a negative one is a malformed row.
///
/// # Errors
/// [`PostgresError::MalformedRow`].
pub(crate) fn unsigned(table: &'static str, value: i64) -> Result<u64, PostgresError> {
    u64::try_from(value).map_err(|_| PostgresError::MalformedRow {
        table,
        reason: format!("negative version or count {value}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_microseconds_on_both_sides_of_the_epoch() {
        for micros in [0, 1, -1, 1_764_000_000_123_456, -86_400_000_001] {
            let time = system_time(micros);
            let interval = since_epoch("t", time).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(interval.microseconds, micros);
        }
    }

    #[test]
    fn durations_are_capped_at_a_century_and_limits_checked() {
        assert_eq!(
            interval(Duration::MAX).microseconds,
            interval(LONGEST).microseconds
        );
        assert_eq!(
            interval(Duration::from_millis(1500)).microseconds,
            1_500_000
        );
        assert!(write_limit(0).is_err());
        assert!(write_limit(MAX_WRITE_BYTES + 1).is_err());
        assert!(fits("x", 11, 10).is_err());
        assert!(text("x", "a\0b").is_err());
        assert!(text("x", "café").is_ok());
    }
}
