//! How a duration reads in an error: one rule for every kind and every transport.

use std::fmt;
use std::time::Duration;

/// A duration as error texts show it: whole milliseconds, rounded to the nearest (`3000 ms`).
///
/// A limit measured on one side of a transport and the time left on the other differ by a
/// few microseconds (`3s` here, `2.999983485s` there): rounded to milliseconds, the same
/// limit reads the same wherever it was noticed. Every duration in catga's error texts is
/// written this way; adapters use it for theirs.
///
/// ```
/// use std::time::Duration;
/// use catga_core::error::Millis;
///
/// assert_eq!(Millis(Duration::from_secs(3)).to_string(), "3000 ms");
/// assert_eq!(Millis(Duration::from_nanos(2_999_983_485)).to_string(), "3000 ms");
/// assert_eq!(Millis(Duration::from_micros(1_499)).to_string(), "1 ms");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounded = self
            .0
            .saturating_add(Duration::from_micros(500))
            .as_millis();
        write!(f, "{rounded} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_to_the_nearest_millisecond() {
        let ms = |d: Duration| Millis(d).to_string();
        assert_eq!(ms(Duration::ZERO), "0 ms");
        assert_eq!(ms(Duration::from_micros(499)), "0 ms");
        assert_eq!(ms(Duration::from_micros(500)), "1 ms");
        assert_eq!(ms(Duration::from_nanos(2_999_983_485)), "3000 ms");
        assert_eq!(ms(Duration::from_secs(3)), "3000 ms");
        assert_eq!(
            ms(Duration::MAX),
            format!("{} ms", Duration::MAX.as_millis())
        );
    }
}
