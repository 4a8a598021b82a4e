//! `Request-Timeout`: how long the client waits, made the dispatch's deadline.
//!
//! HTTP has no standard header for this. `Request-Timeout` says what it is, and its value is
//! a number of **seconds**, like every time in HTTP's own headers (`Retry-After`,
//! `Cache-Control: max-age`), with an optional fraction down to the nanosecond for
//! sub-second deadlines: `5`, `0.25`, `1.5`. A route's maximum
//! ([`ContextRules::timeout`](crate::ContextRules::timeout)) caps it, so a client can ask
//! for less time than the route allows but never for more.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::HeaderName;

use super::HeaderError;

/// The request header that says how long the client waits for the reply, in seconds:
/// `Request-Timeout`.
pub const REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("request-timeout");

/// The longest deadline a request can have, whatever its header or route says: one day.
/// (A deadline is an instant, and an instant too far away does not exist.)
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The most digits read before the decimal point: enough for [`MAX_TIMEOUT`], few enough
/// that the number cannot overflow.
const MAX_WHOLE_DIGITS: usize = 9;

/// The timeout the request asks for, if it has the header.
pub(super) fn requested(headers: &HeaderMap) -> Result<Option<Duration>, HeaderError> {
    let mut values = headers.get_all(&REQUEST_TIMEOUT).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderError::Timeout);
    }
    match seconds(value.as_bytes()) {
        Some(timeout) if !timeout.is_zero() => Ok(Some(timeout)),
        _ => Err(HeaderError::Timeout),
    }
}

/// `digits[.digits]` as a duration in seconds, the fraction read to the nanosecond.
fn seconds(value: &[u8]) -> Option<Duration> {
    let (whole, fraction) = match value.iter().position(|b| *b == b'.') {
        Some(dot) => (&value[..dot], Some(&value[dot + 1..])),
        None => (value, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    if !digits(whole) || whole.len() > MAX_WHOLE_DIGITS {
        return None;
    }
    let secs = whole.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let nanos = match fraction {
        None => 0,
        Some(fraction) if digits(fraction) => {
            // Digits past the ninth are below a nanosecond: read, then ignored.
            let mut nanos = 0u32;
            for place in 0..9 {
                let digit = fraction.get(place).map_or(0, |d| u32::from(d - b'0'));
                nanos = nanos * 10 + digit;
            }
            nanos
        }
        Some(_) => return None,
    };
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn seconds_with_an_optional_fraction() {
        assert_eq!(seconds(b"5"), Some(Duration::from_secs(5)));
        assert_eq!(seconds(b"0.25"), Some(Duration::from_millis(250)));
        assert_eq!(seconds(b"1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(b"0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(seconds(b"0.0000000019"), Some(Duration::from_nanos(1)));
        assert_eq!(
            seconds(b"999999999"),
            Some(Duration::from_secs(999_999_999))
        );
        for bad in [
            &b""[..],
            b".5",
            b"5.",
            b"-1",
            b"1e3",
            b" 1",
            b"1s",
            b"1000000000",
            b"1.2.3",
        ] {
            assert_eq!(seconds(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn zero_and_repeated_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_TIMEOUT, HeaderValue::from_static("0"));
        assert!(requested(&headers).is_err());
        headers.insert(REQUEST_TIMEOUT, HeaderValue::from_static("2"));
        assert_eq!(
            requested(&headers).ok().flatten(),
            Some(Duration::from_secs(2))
        );
        headers.append(REQUEST_TIMEOUT, HeaderValue::from_static("3"));
        assert!(requested(&headers).is_err());
    }
}
