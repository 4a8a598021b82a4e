//! Events as the event store keeps them, back into [`StoredEvent`]s.
//!
//! An event is an entry of its stream's Redis Stream with id `version-0` and the fields `id`,
//! `type`, `payload`, `correlation`, `causation` (UUIDs hyphenated, an absent one empty) and
//! `at` (when the server recorded it, in whole microseconds since the Unix epoch). Fields
//! added later are ignored; a missing or unreadable one makes the entry malformed.

use std::time::{Duration, SystemTime};

use catga_core::store::event::StoredEvent;
use redis::Value;
use uuid::Uuid;

use super::outcome::{bytes, decimal, text};
use crate::store::RedisStoreError;

/// The number of an entry id the store writes, `n-0`.
pub(super) fn id_number(id: &[u8]) -> Option<u64> {
    let digits = id.strip_suffix(b"-0")?;
    decimal(digits)
}

/// The entries of `stream` (the key `key`) as `XRANGE` gives them, which must be versions
/// `first`, `first + 1`, … with no gap.
pub(super) fn entries(
    operation: &'static str,
    key: &str,
    stream: &str,
    first: u64,
    reply: Value,
) -> Result<Vec<StoredEvent>, RedisStoreError> {
    let Value::Array(entries) = reply else {
        return Err(RedisStoreError::malformed(
            operation,
            key,
            "`XRANGE` answered no list of entries",
        ));
    };
    let mut events = Vec::with_capacity(entries.len());
    for (entry, version) in entries.into_iter().zip(first..) {
        let event = self::entry(operation, key, stream, entry)?;
        if event.version != version {
            return Err(RedisStoreError::malformed(
                operation,
                key,
                format!(
                    "it holds event {} where version {version} belongs: a version is missing",
                    event.version
                ),
            ));
        }
        events.push(event);
    }
    Ok(events)
}

/// One entry `[id, [field, value, …]]` of `stream` (the key `key`).
pub(super) fn entry(
    operation: &'static str,
    key: &str,
    stream: &str,
    entry: Value,
) -> Result<StoredEvent, RedisStoreError> {
    let malformed = |reason: String| RedisStoreError::malformed(operation, key, reason);
    let Value::Array(parts) = entry else {
        return Err(malformed("an entry is not `[id, fields]`".to_owned()));
    };
    let [id, fields] = <[Value; 2]>::try_from(parts)
        .map_err(|_| malformed("an entry is not `[id, fields]`".to_owned()))?;
    let id = bytes(id).ok_or_else(|| malformed("an entry has no id".to_owned()))?;
    let version = id_number(&id).filter(|v| *v > 0).ok_or_else(|| {
        malformed(format!(
            "the entry id `{}` is no version (`n-0`, n from 1)",
            String::from_utf8_lossy(&id)
        ))
    })?;
    let Value::Array(fields) = fields else {
        return Err(malformed(format!("event {version} has no fields")));
    };
    let mut found = Fields::default();
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let slot = match bytes(name).as_deref() {
            Some(b"id") => &mut found.id,
            Some(b"type") => &mut found.event_type,
            Some(b"payload") => &mut found.payload,
            Some(b"correlation") => &mut found.correlation,
            Some(b"causation") => &mut found.causation,
            Some(b"at") => &mut found.at,
            _ => continue,
        };
        *slot = bytes(value);
    }
    let field = |name: &str, value: Option<Vec<u8>>| {
        value.ok_or_else(|| malformed(format!("event {version} has no field `{name}`")))
    };
    let uuid = |name: &str, value: Vec<u8>| {
        Uuid::try_parse_ascii(&value)
            .map_err(|_| malformed(format!("event {version}'s `{name}` is no UUID")))
    };
    let optional = |name: &str, value: Vec<u8>| {
        if value.is_empty() {
            Ok(None)
        } else {
            uuid(name, value).map(Some)
        }
    };
    let event_id = uuid("id", field("id", found.id)?)?;
    let event_type = String::from_utf8(field("type", found.event_type)?)
        .map_err(|_| malformed(format!("event {version}'s `type` is not UTF-8")))?;
    let payload = field("payload", found.payload)?;
    let correlation_id = optional("correlation", field("correlation", found.correlation)?)?;
    let causation_id = optional("causation", field("causation", found.causation)?)?;
    let at = decimal(&field("at", found.at)?)
        .ok_or_else(|| malformed(format!("event {version}'s `at` is no time in microseconds")))?;
    Ok(StoredEvent {
        stream: stream.to_owned(),
        version,
        event_id,
        event_type,
        payload,
        recorded_at: micros(at),
        correlation_id,
        causation_id,
    })
}

/// What `READ_ALL` answers after its tag: position id, stream name, entry, three at a time.
pub(super) fn positioned(
    operation: &'static str,
    log: &str,
    stream_key: impl Fn(&str) -> String,
    values: Vec<Value>,
) -> Result<Vec<(i64, StoredEvent)>, RedisStoreError> {
    let malformed = |reason: &str| RedisStoreError::malformed(operation, log, reason);
    if !values.len().is_multiple_of(3) {
        return Err(malformed("the script answered a partial entry"));
    }
    let mut read = Vec::with_capacity(values.len() / 3);
    let mut values = values.into_iter();
    while let (Some(position), Some(stream), Some(event)) =
        (values.next(), values.next(), values.next())
    {
        let position = bytes(position)
            .as_deref()
            .and_then(id_number)
            .and_then(|p| i64::try_from(p).ok())
            .ok_or_else(|| malformed("an entry id of the log is no position (`n-0`)"))?;
        let stream = text(stream).ok_or_else(|| malformed("a stream name is not UTF-8"))?;
        let event = entry(operation, &stream_key(&stream), &stream, event)?;
        read.push((position, event));
    }
    Ok(read)
}

#[derive(Default)]
struct Fields {
    id: Option<Vec<u8>>,
    event_type: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    correlation: Option<Vec<u8>>,
    causation: Option<Vec<u8>>,
    at: Option<Vec<u8>>,
}

/// `micros` microseconds after the Unix epoch.
pub(in crate::store) fn micros(micros: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn fields(pairs: &[(&str, &[u8])]) -> Value {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(name, value)| [bulk(name.as_bytes()), bulk(value)])
                .collect(),
        )
    }

    const ID: &[u8] = b"0190c3e0-0000-7000-8000-000000000001";

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("id", ID),
            ("type", b"Placed"),
            ("payload", b"\x00\xff{"),
            ("correlation", b""),
            ("causation", ID),
            ("at", b"1700000000123456"),
        ]
    }

    #[test]
    fn an_entry_decodes_every_field() {
        let event = entry(
            "op",
            "k",
            "s",
            Value::Array(vec![bulk(b"3-0"), fields(&good())]),
        )
        .expect("a good entry");
        assert_eq!(event.version, 3);
        assert_eq!(event.payload, b"\x00\xff{");
        assert_eq!(event.correlation_id, None);
        assert_eq!(event.causation_id, Some(event.event_id));
        assert_eq!(event.recorded_at, micros(1_700_000_000_123_456));
    }

    #[test]
    fn a_bad_entry_is_malformed_never_a_panic() {
        let mut cases = vec![
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![bulk(b"3-0")]),
            Value::Array(vec![bulk(b"3-1"), fields(&good())]),
            Value::Array(vec![bulk(b"0-0"), fields(&good())]),
            Value::Array(vec![bulk(b"x-0"), fields(&good())]),
            Value::Array(vec![bulk(b"3-0"), Value::Int(1)]),
        ];
        for broken in 0..good().len() {
            // Each field missing, then each field unreadable.
            let mut missing = good();
            missing.remove(broken);
            cases.push(Value::Array(vec![bulk(b"3-0"), fields(&missing)]));
            let mut bad = good();
            if bad[broken].0 != "payload" {
                bad[broken].1 = b"\xffnot";
                cases.push(Value::Array(vec![bulk(b"3-0"), fields(&bad)]));
            }
        }
        for case in cases {
            assert!(
                matches!(
                    entry("op", "k", "s", case.clone()),
                    Err(RedisStoreError::Malformed { .. })
                ),
                "{case:?}"
            );
        }
    }

    #[test]
    fn a_gap_in_versions_is_malformed() {
        let entry = |id: &[u8]| Value::Array(vec![bulk(id), fields(&good())]);
        let ok = entries(
            "op",
            "k",
            "s",
            1,
            Value::Array(vec![entry(b"1-0"), entry(b"2-0")]),
        );
        assert_eq!(ok.expect("versions 1 and 2").len(), 2);
        let gap = entries(
            "op",
            "k",
            "s",
            1,
            Value::Array(vec![entry(b"1-0"), entry(b"3-0")]),
        );
        assert!(matches!(gap, Err(RedisStoreError::Malformed { .. })));
    }
}
