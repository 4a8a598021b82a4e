//! What the stores' Lua scripts answer, and the values in it.
//!
//! Every script of the event and saga stores answers an array whose first element says how it
//! went: `{'ok', …}` (the rest is the result), `{'conflict', actual}` (the version check failed,
//! nothing was written) or `{'malformed', key, reason}` (a key holds something the store never
//! writes; nothing was written). A reply of any other shape is itself malformed. Nothing here
//! panics on what the server sends.

use redis::Value;

use crate::store::RedisStoreError;

/// How a script went.
#[derive(Debug)]
pub(in crate::store) enum Outcome {
    /// It did what was asked; the values after the tag.
    Done(Vec<Value>),
    /// The version check failed: the version found. Nothing was written.
    Conflict(u64),
}

/// Reads a script's reply; `{'malformed', key, reason}` is [`RedisStoreError::Malformed`].
pub(in crate::store) fn outcome(
    operation: &'static str,
    key: &str,
    reply: Value,
) -> Result<Outcome, RedisStoreError> {
    let shape = || RedisStoreError::malformed(operation, key, "the script answered no outcome");
    let Value::Array(items) = reply else {
        return Err(shape());
    };
    let mut items = items.into_iter();
    let tag = items.next().and_then(bytes).ok_or_else(shape)?;
    match tag.as_slice() {
        b"ok" => Ok(Outcome::Done(items.collect())),
        b"conflict" => {
            let actual = items.next().as_ref().and_then(count).ok_or_else(shape)?;
            Ok(Outcome::Conflict(actual))
        }
        b"malformed" => {
            let at = items
                .next()
                .and_then(text)
                .unwrap_or_else(|| key.to_owned());
            let reason = items.next().and_then(text).unwrap_or_default();
            Err(RedisStoreError::malformed(operation, at, reason))
        }
        _ => Err(shape()),
    }
}

/// A [`RedisStoreError::Command`] refused with `WRONGTYPE` is a key holding a value of
/// another type: [`RedisStoreError::Malformed`]. Other errors are kept as they are.
pub(in crate::store) fn typed(error: RedisStoreError) -> RedisStoreError {
    match error {
        RedisStoreError::Command {
            operation,
            key,
            source,
        } if source.code() == Some("WRONGTYPE") => RedisStoreError::Malformed {
            operation,
            key,
            reason: "it holds a value of another type (`WRONGTYPE`)".to_owned(),
        },
        other => other,
    }
}

/// The bytes of a string value.
pub(in crate::store) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// A string value that is UTF-8.
pub(in crate::store) fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// A count or version: a non-negative integer, as an integer or as decimal digits.
pub(in crate::store) fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => decimal(bytes),
        Value::SimpleString(text) => decimal(text.as_bytes()),
        _ => None,
    }
}

/// Decimal digits only (no sign, no space), at most 19 of them: the numbers the stores write.
pub(in crate::store) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn each_outcome_is_read() {
        let done = outcome("op", "k", Value::Array(vec![bulk("ok"), Value::Int(3)]));
        assert!(matches!(done, Ok(Outcome::Done(rest)) if rest == [Value::Int(3)]));
        let conflict = outcome(
            "op",
            "k",
            Value::Array(vec![bulk("conflict"), Value::Int(7)]),
        );
        assert!(matches!(conflict, Ok(Outcome::Conflict(7))));
        let malformed = outcome(
            "op",
            "k",
            Value::Array(vec![bulk("malformed"), bulk("k2"), bulk("why")]),
        );
        assert!(matches!(
            malformed,
            Err(RedisStoreError::Malformed { key, reason, .. }) if key == "k2" && reason == "why"
        ));
    }

    #[test]
    fn a_reply_of_another_shape_is_malformed() {
        for reply in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![bulk("maybe")]),
            Value::Array(vec![bulk("conflict")]),
            Value::Array(vec![bulk("conflict"), Value::Int(-1)]),
            Value::Array(vec![bulk("conflict"), bulk("x")]),
        ] {
            assert!(
                matches!(
                    outcome("op", "k", reply.clone()),
                    Err(RedisStoreError::Malformed { .. })
                ),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn decimals_are_digits_only() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), None, "20 digits");
        assert_eq!(
            decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1.0", b"1e3", b"\xff"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
