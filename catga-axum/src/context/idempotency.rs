//! `Idempotency-Key`: a client's name for one operation, made the message id.
//!
//! catga's [`Idempotency`](catga_core::behavior::Idempotency) behaviour recognises a repeat
//! by the message's own [`IdempotencyKey`](catga_core::behavior::IdempotencyKey) if it
//! declares one, else by the dispatch's message id. An HTTP client that retries a request
//! sends the same `Idempotency-Key` (IETF draft `draft-ietf-httpapi-idempotency-key-header`),
//! so the key becomes the message id through a name-based UUID (v5) in a fixed namespace:
//! every retry of one request has the same message id, and the behaviour answers it with the
//! first reply instead of running the handler again. The behaviour keys its records by
//! message name too, so one key sent to two routes names two operations.

use axum::http::HeaderMap;
use axum::http::header::HeaderName;
use uuid::Uuid;

use super::HeaderError;

/// The request header that names an operation a client may retry: `Idempotency-Key`.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The namespace of the name-based UUIDs made from keys. Fixed forever: changing it would
/// make every retry in flight during an upgrade run again.
const NAMESPACE: Uuid = Uuid::from_u128(0x2d0b_88be_36db_4723_be34_82d5_1d47_922c);

/// The message id a request with `Idempotency-Key: key` is dispatched with: a UUID v5 of
/// `key` in a namespace of this crate's, the same in every process and every release.
///
/// ```
/// let id = catga_axum::message_id_for_key("order-7-attempt");
/// assert_eq!(id, catga_axum::message_id_for_key("order-7-attempt"));
/// assert_ne!(id, catga_axum::message_id_for_key("order-8-attempt"));
/// assert_eq!(id.get_version_num(), 5);
/// ```
pub fn message_id_for_key(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

/// The key the request names, if any: one header of 1 to [`MAX_IDEMPOTENCY_KEY_BYTES`]
/// visible ASCII characters, bare (`abc`) or as a structured-field string (`"abc"`, the
/// draft's form).
pub(super) fn key(headers: &HeaderMap) -> Result<Option<&str>, HeaderError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderError::IdempotencyKey("it is sent more than once"));
    }
    let bytes = value.as_bytes();
    let bytes = match bytes {
        [b'"', inner @ .., b'"'] => inner,
        _ => bytes,
    };
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(HeaderError::IdempotencyKey(
            "it must be 1 to 255 characters long",
        ));
    }
    if !bytes
        .iter()
        .all(|b| (0x21..=0x7e).contains(b) && *b != b'"')
    {
        return Err(HeaderError::IdempotencyKey(
            "it must be visible ASCII characters other than `\"`",
        ));
    }
    // Visible ASCII only, checked above: valid UTF-8.
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| HeaderError::IdempotencyKey("it must be visible ASCII characters"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_key_is_bare_or_quoted() {
        assert_eq!(key(&with(&["abc-1"])).ok().flatten(), Some("abc-1"));
        assert_eq!(key(&with(&["\"abc-1\""])).ok().flatten(), Some("abc-1"));
        assert_eq!(key(&HeaderMap::new()).ok().flatten(), None);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "\"\"", "a b", "a\"b", "\"abc"] {
            assert!(key(&with(&[bad])).is_err(), "{bad:?}");
        }
        assert!(key(&with(&["a", "b"])).is_err());
        let long: &'static str = Box::leak("k".repeat(256).into_boxed_str());
        assert!(key(&with(&[long])).is_err());
        assert!(key(&with(&[&long[1..]])).is_ok());
    }

    #[test]
    fn the_namespace_never_changes() {
        // A changed id would make retries in flight during an upgrade run twice.
        assert_eq!(
            message_id_for_key("k").to_string(),
            "db3408a5-7d3f-5a2f-86e5-709702ced485"
        );
    }
}
