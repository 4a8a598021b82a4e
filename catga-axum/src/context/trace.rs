//! W3C Trace Context: `traceparent` and `tracestate`, checked and carried into the context.
//!
//! The headers travel in the [`Context`](catga_core::Context) under the same names, where
//! catga's `Tracing` behaviour and its transports read them. A `traceparent` that is not of
//! the W3C form is ignored, not refused: the specification asks a receiver to start a new
//! trace rather than fail, since a proxy along the way may have mangled it. A `tracestate`
//! goes with a valid `traceparent` only.

use axum::http::HeaderMap;
use axum::http::header::HeaderName;

/// The W3C `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest combined `tracestate` carried; a longer one is dropped (the specification
/// asks to propagate at least 512 characters and allows discarding more).
const MAX_TRACESTATE: usize = 512;

/// The length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;

/// The request's trace context, if its `traceparent` is valid: the `traceparent` (in its
/// version-00 form) and the `tracestate`, if any and well formed.
pub(super) fn trace_context(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let mut parents = headers.get_all(&TRACEPARENT).iter();
    let parent = parents.next()?;
    if parents.next().is_some() {
        tracing::debug!(target: "catga_axum", "more than one `traceparent`; ignored");
        return None;
    }
    let Some(parent) = traceparent(parent.as_bytes()) else {
        tracing::debug!(target: "catga_axum", "a malformed `traceparent`; ignored");
        return None;
    };
    Some((parent, tracestate(headers)))
}

/// `value` as a version-00 `traceparent`, if it is one of any version this reader can read:
/// a future version is read as its version-00 prefix, as the specification says.
fn traceparent(value: &[u8]) -> Option<String> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let (version, rest) = value.split_at(2);
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    // Version 00 is exactly 55 bytes; a later version may go on, after a `-`.
    let extended = value.len() > TRACEPARENT_LEN;
    if extended && (version == b"00" || value[TRACEPARENT_LEN] != b'-') {
        return None;
    }
    let fields = &rest[..TRACEPARENT_LEN - 2];
    // `-` trace-id `-` parent-id `-` flags
    let (trace_id, parent_id, flags) = (&fields[1..33], &fields[34..50], &fields[51..53]);
    let dashes = [fields[0], fields[33], fields[50]] == [b'-'; 3];
    let valid = dashes
        && is_lower_hex(trace_id)
        && is_lower_hex(parent_id)
        && is_lower_hex(flags)
        && trace_id.iter().any(|b| *b != b'0')
        && parent_id.iter().any(|b| *b != b'0');
    if !valid {
        return None;
    }
    let mut normalised = String::with_capacity(TRACEPARENT_LEN);
    normalised.push_str("00");
    // Lower-case hex and dashes only, checked above.
    normalised.push_str(std::str::from_utf8(fields).ok()?);
    Some(normalised)
}

/// Every `tracestate` header, combined with commas as HTTP allows, if the whole is
/// printable ASCII and at most [`MAX_TRACESTATE`] bytes.
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let mut combined = String::new();
    for value in headers.get_all(&TRACESTATE) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !combined.is_empty() {
            combined.push(',');
        }
        combined.push_str(value);
    }
    let printable = combined.bytes().all(|b| (0x20..=0x7e).contains(&b));
    (printable && !combined.is_empty() && combined.len() <= MAX_TRACESTATE).then_some(combined)
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_kept() {
        assert_eq!(traceparent(VALID.as_bytes()).as_deref(), Some(VALID));
    }

    #[test]
    fn a_future_version_is_read_as_version_00() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(traceparent(future.as_bytes()).as_deref(), Some(VALID));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(traceparent(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn tracestate_goes_with_a_valid_traceparent_only() {
        let mut headers = HeaderMap::new();
        headers.append(TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("b=2"));
        assert_eq!(trace_context(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(
            trace_context(&headers),
            Some((VALID.to_string(), Some("a=1,b=2".to_string())))
        );
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(trace_context(&headers), None, "two traceparents");
    }
}
