//! What the schedule store's scripts answer (see `scripts.rs`), read strictly: the tag of
//! every answer, a stale token's floor, a flag, the messages a claim took and the next due
//! time. Anything of another shape is [`RedisStoreError::Malformed`]; nothing here panics on
//! what the server sends.

use std::time::SystemTime;

use catga_core::store::lease::FencingToken;
use catga_core::store::schedule::Scheduled;
use redis::Value;
use uuid::Uuid;

use super::fields;
use crate::store::error::RedisStoreError;
use crate::store::event::outcome::{Outcome, bytes, outcome, text};

/// How a script answered: done (its values), or a stale token (the floor it found).
pub(super) enum Answer {
    Done(Vec<Value>),
    Stale(FencingToken),
}

/// A script's reply: `{'ok', …}`, `{'stale', floor}` (the floor kept at `fence`), or
/// `{'malformed', key, reason}` as [`RedisStoreError::Malformed`].
pub(super) fn answer(
    operation: &'static str,
    key: &str,
    fence: &str,
    reply: Value,
) -> Result<Answer, RedisStoreError> {
    if let Value::Array(items) = &reply
        && let [Value::BulkString(tag), floor] = items.as_slice()
        && tag.as_slice() == b"stale"
    {
        return floor_of(floor)
            .map(Answer::Stale)
            .ok_or_else(|| malformed(operation, fence, "the floor is no fencing token"));
    }
    match outcome(operation, key, reply)? {
        Outcome::Done(values) => Ok(Answer::Done(values)),
        Outcome::Conflict(_) => Err(unexpected(operation, key)),
    }
}

/// A floor as a script answered it: decimal digits, a `u64`.
fn floor_of(value: &Value) -> Option<FencingToken> {
    let Value::BulkString(digits) = value else {
        return None;
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let floor: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(FencingToken::new(floor))
}

/// `{'ok', 1}` or `{'ok', 0}`.
pub(super) fn flag(
    operation: &'static str,
    key: &str,
    values: &[Value],
) -> Result<bool, RedisStoreError> {
    match values {
        [Value::Int(1)] => Ok(true),
        [Value::Int(0)] => Ok(false),
        _ => Err(unexpected(operation, key)),
    }
}

/// One message a claim (`operation`) took: `{id, score, type, fields}` as the script answers
/// it, the id a member of the due index `due`, its message at `message_key(id)`.
pub(super) fn claimed(
    operation: &'static str,
    due: &str,
    message_key: impl Fn(Uuid) -> String,
    row: Value,
) -> Result<Scheduled, RedisStoreError> {
    let Value::Array(parts) = row else {
        return Err(unexpected(operation, due));
    };
    let [member, score, kind, flat] =
        <[Value; 4]>::try_from(parts).map_err(|_| unexpected(operation, due))?;
    let member = bytes(member).ok_or_else(|| unexpected(operation, due))?;
    let id = Uuid::try_parse_ascii(&member)
        .ok()
        .filter(|id| id.to_string().as_bytes() == member.as_slice())
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(&member);
            let reason =
                format!("its member {shown:?} is not a message id (a lower-case hyphenated UUID)");
            malformed(operation, due, reason)
        })?;
    let key = message_key(id);
    let score = bytes(score).ok_or_else(|| unexpected(operation, due))?;
    let micros = score_micros(operation, due, &score)?;
    match text(kind).as_deref() {
        Some("hash") => {}
        Some("none") => {
            let reason = "the due index names this message, and it is not there";
            return Err(malformed(operation, key, reason));
        }
        Some(other) => {
            let reason = format!("it holds a {other}, not a scheduled message");
            return Err(malformed(operation, key, reason));
        }
        None => return Err(unexpected(operation, due)),
    }
    let flat: Vec<Vec<u8>> = redis::from_redis_value(flat)
        .map_err(|e| malformed(operation, &key, format!("its fields: {e}")))?;
    let (message, at) =
        fields::decode(id, &key, flat).map_err(|reason| malformed(operation, &key, reason))?;
    if at != micros {
        let reason = format!("it is due at {at} µs, and the due index says {micros} µs");
        return Err(malformed(operation, key, reason));
    }
    Ok(message)
}

/// The next due time as the script answers it: `{}` (none) or `{score}`.
pub(super) fn next_due(
    operation: &'static str,
    due: &str,
    values: Vec<Value>,
) -> Result<Option<SystemTime>, RedisStoreError> {
    let score = match <[Value; 1]>::try_from(values) {
        Ok([score]) => bytes(score).ok_or_else(|| unexpected(operation, due))?,
        Err(values) if values.is_empty() => return Ok(None),
        Err(_) => return Err(unexpected(operation, due)),
    };
    let micros = score_micros(operation, due, &score)?;
    fields::time_of(micros)
        .map(Some)
        .ok_or_else(|| malformed(operation, due, format!("{micros} µs is out of range")))
}

/// A score of the due index `due` as whole microseconds.
fn score_micros(operation: &'static str, due: &str, score: &[u8]) -> Result<i64, RedisStoreError> {
    fields::score_micros(score).ok_or_else(|| {
        let score = String::from_utf8_lossy(score);
        let reason = format!("a member is scored {score}, not a due time in whole µs");
        malformed(operation, due, reason)
    })
}

pub(super) fn malformed(
    operation: &'static str,
    key: impl Into<String>,
    reason: impl Into<String>,
) -> RedisStoreError {
    RedisStoreError::malformed(operation, key, reason)
}

/// The error for a script answer of a shape the script never gives.
pub(super) fn unexpected(operation: &'static str, key: &str) -> RedisStoreError {
    malformed(operation, key, "the script answered an unexpected shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn floors_are_whole_numbers() {
        assert_eq!(floor_of(&bulk("7")), Some(FencingToken::new(7)));
        let max = floor_of(&bulk("18446744073709551615"));
        assert_eq!(max, Some(FencingToken::new(u64::MAX)));
        for bad in [
            bulk(""),
            bulk("-1"),
            bulk("x"),
            bulk("18446744073709551616"),
        ] {
            assert_eq!(floor_of(&bad), None, "{bad:?}");
        }
        assert_eq!(floor_of(&Value::Int(3)), None);
        let stale = Value::Array(vec![bulk("stale"), bulk("x")]);
        assert!(matches!(
            answer("op", "k", "f", stale),
            Err(RedisStoreError::Malformed { key, .. }) if key == "f"
        ));
    }

    #[test]
    fn rows_of_another_shape_are_malformed_not_panics() {
        let key = |id: Uuid| format!("m:{id}");
        let id = Uuid::now_v7().to_string();
        for row in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![bulk(&id), bulk("1"), bulk("hash")]),
            Value::Array(vec![
                Value::Int(1),
                bulk("1"),
                bulk("hash"),
                Value::Array(vec![]),
            ]),
            Value::Array(vec![bulk(&id), bulk("1"), Value::Nil, Value::Array(vec![])]),
            Value::Array(vec![bulk(&id), bulk("1"), bulk("hash"), Value::Int(3)]),
        ] {
            assert!(
                matches!(
                    claimed("op", "d", key, row.clone()),
                    Err(RedisStoreError::Malformed { .. })
                ),
                "{row:?}"
            );
        }
        for values in [
            vec![Value::Int(1)],
            vec![bulk("1"), bulk("2")],
            vec![bulk("1e300")],
        ] {
            assert!(next_due("op", "d", values).is_err());
        }
        assert_eq!(next_due("op", "d", vec![]).ok(), Some(None));
    }
}
