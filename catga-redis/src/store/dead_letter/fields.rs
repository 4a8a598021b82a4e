//! A [`DeadLetterRecord`] as the fields of its Redis hash, and back.
//!
//! | field | value |
//! |---|---|
//! | `id`, `message_id`, `correlation_id`, `causation_id`? | hyphenated UUIDs |
//! | `message`, `handler`?, `code`, `error`, `source`? | text (UTF-8) |
//! | `payload`?, `raw_headers`? | bytes, as given (an empty payload is an empty field) |
//! | `attempts` | decimal |
//! | `failed_at` | microseconds since 1970, decimal (negative before) |
//! | `stage` | `handler`, `delivery`, `publish` or `compensation` |
//! | `headers`; `header.<i>.name`, `header.<i>.value` | how many; each, in order from 0 |
//!
//! `?` marks a field that is absent when the record's option is `None`. The take script checks
//! the same rules in Lua before it removes a record, so a record this cannot read is never
//! taken away (see `scripts.rs`); fields other than these are ignored.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use catga_core::store::dead_letter::{DeadLetterRecord, FailureStage};
use uuid::Uuid;

/// The largest `failed_at` distance from 1970 kept, in microseconds (±31,000 years): 18
/// digits, which the take script's check and an `i64` both hold.
const LONGEST_MICROS: i64 = 999_999_999_999_999_999;

/// A record's fields (name, value), in the order written, and their total size in bytes.
pub(super) struct Fields {
    pub(super) pairs: Vec<(String, Vec<u8>)>,
    pub(super) bytes: usize,
}

/// The name of a stage as serde writes it.
fn stage_name(stage: FailureStage) -> &'static str {
    match stage {
        FailureStage::Handler => "handler",
        FailureStage::Delivery => "delivery",
        FailureStage::Publish => "publish",
        FailureStage::Compensation => "compensation",
    }
}

fn stage_named(name: &str) -> Option<FailureStage> {
    Some(match name {
        "handler" => FailureStage::Handler,
        "delivery" => FailureStage::Delivery,
        "publish" => FailureStage::Publish,
        "compensation" => FailureStage::Compensation,
        _ => return None,
    })
}

/// `time` in microseconds since 1970, rounded down; `None` beyond ±31,000 years.
pub(super) fn micros_floor(time: SystemTime) -> Option<i64> {
    let micros = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok()?,
        Err(before) => {
            let before = before.duration();
            let partial = u128::from(!before.subsec_nanos().is_multiple_of(1000));
            -i64::try_from(before.as_micros() + partial).ok()?
        }
    };
    (micros.abs() <= LONGEST_MICROS).then_some(micros)
}

/// `time` in microseconds since 1970, rounded up; `None` beyond ±31,000 years.
pub(super) fn micros_ceil(time: SystemTime) -> Option<i64> {
    let floor = micros_floor(time)?;
    let exact = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.subsec_nanos().is_multiple_of(1000),
        Err(before) => before.duration().subsec_nanos().is_multiple_of(1000),
    };
    Some(if exact { floor } else { floor + 1 })
}

fn time_of(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// `record` as hash fields, `failed_at` in microseconds (rounded down), or `None` if its
/// `failed_at` is more than 31,000 years from 1970.
pub(super) fn encode(record: &DeadLetterRecord) -> Option<(Fields, i64)> {
    let failed_at = micros_floor(record.failed_at)?;
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(16 + 2 * record.headers.len());
    let mut put = |name: &str, value: Vec<u8>| pairs.push((name.to_owned(), value));
    put("id", record.id.to_string().into_bytes());
    put("message", record.message.clone().into_bytes());
    if let Some(handler) = &record.handler {
        put("handler", handler.clone().into_bytes());
    }
    if let Some(payload) = &record.payload {
        put("payload", payload.clone());
    }
    put("code", record.code.clone().into_bytes());
    put("error", record.error.clone().into_bytes());
    put("attempts", record.attempts.to_string().into_bytes());
    put("message_id", record.message_id.to_string().into_bytes());
    put(
        "correlation_id",
        record.correlation_id.to_string().into_bytes(),
    );
    if let Some(causation) = record.causation_id {
        put("causation_id", causation.to_string().into_bytes());
    }
    put("failed_at", failed_at.to_string().into_bytes());
    put("stage", stage_name(record.stage).as_bytes().to_vec());
    if let Some(source) = &record.source {
        put("source", source.clone().into_bytes());
    }
    if let Some(raw) = &record.raw_headers {
        put("raw_headers", raw.clone());
    }
    put("headers", record.headers.len().to_string().into_bytes());
    for (i, (name, value)) in record.headers.iter().enumerate() {
        put(&format!("header.{i}.name"), name.clone().into_bytes());
        put(&format!("header.{i}.value"), value.clone().into_bytes());
    }
    let bytes = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    Some((Fields { pairs, bytes }, failed_at))
}

/// The record in `flat` (`HGETALL`'s field, value, field, value, …), whose id must be `id`;
/// or what is wrong with it.
pub(super) fn decode(id: Uuid, flat: Vec<Vec<u8>>) -> Result<DeadLetterRecord, String> {
    if !flat.len().is_multiple_of(2) {
        return Err(format!("{} items is not field/value pairs", flat.len()));
    }
    let mut fields: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.insert(name, value);
    }
    let mut bytes = |name: &str| fields.remove(name.as_bytes());
    let text = |name: &str, value: Option<Vec<u8>>| -> Result<Option<String>, String> {
        value
            .map(|v| String::from_utf8(v).map_err(|_| format!("field `{name}` is not UTF-8")))
            .transpose()
    };
    let required = |name: &str, value: Option<String>| {
        value.ok_or_else(|| format!("field `{name}` is missing"))
    };
    let uuid = |name: &str, value: Option<String>| -> Result<Option<Uuid>, String> {
        value
            .map(|v| Uuid::parse_str(&v).map_err(|e| format!("field `{name}` = {v:?}: {e}")))
            .transpose()
    };
    let number = |name: &str, value: String| -> Result<i64, String> {
        value
            .parse::<i64>()
            .map_err(|_| format!("field `{name}` = {value:?} is not a whole number"))
    };

    let stored_id = uuid("id", text("id", bytes("id"))?)?;
    if stored_id != Some(id) {
        return Err(format!("field `id` is {stored_id:?}, not {id}"));
    }
    let message = required("message", text("message", bytes("message"))?)?;
    let handler = text("handler", bytes("handler"))?;
    let payload = bytes("payload");
    let code = required("code", text("code", bytes("code"))?)?;
    let error = required("error", text("error", bytes("error"))?)?;
    let attempts = number(
        "attempts",
        required("attempts", text("attempts", bytes("attempts"))?)?,
    )?;
    let attempts =
        u32::try_from(attempts).map_err(|_| format!("{attempts} attempts is not a `u32`"))?;
    let message_id = required("message_id", text("message_id", bytes("message_id"))?)?;
    let message_id = uuid("message_id", Some(message_id))?.unwrap_or_default();
    let correlation_id = required(
        "correlation_id",
        text("correlation_id", bytes("correlation_id"))?,
    )?;
    let correlation_id = uuid("correlation_id", Some(correlation_id))?.unwrap_or_default();
    let causation_id = uuid("causation_id", text("causation_id", bytes("causation_id"))?)?;
    let failed_at = number(
        "failed_at",
        required("failed_at", text("failed_at", bytes("failed_at"))?)?,
    )?;
    let failed_at =
        time_of(failed_at).ok_or_else(|| format!("`failed_at` {failed_at} µs is out of range"))?;
    let stage = required("stage", text("stage", bytes("stage"))?)?;
    let stage = stage_named(&stage).ok_or_else(|| format!("unknown failure stage {stage:?}"))?;
    let source = text("source", bytes("source"))?;
    let raw_headers = bytes("raw_headers");
    let count = number(
        "headers",
        required("headers", text("headers", bytes("headers"))?)?,
    )?;
    let count = usize::try_from(count).map_err(|_| format!("{count} headers"))?;
    let mut headers = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let name = format!("header.{i}.name");
        let value = format!("header.{i}.value");
        headers.push((
            required(&name, text(&name, bytes(&name))?)?,
            required(&value, text(&value, bytes(&value))?)?,
        ));
    }
    Ok(DeadLetterRecord {
        id,
        message,
        handler,
        payload,
        code,
        error,
        attempts,
        message_id,
        correlation_id,
        causation_id,
        headers,
        failed_at,
        stage,
        source,
        raw_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeadLetterRecord {
        DeadLetterRecord {
            id: Uuid::now_v7(),
            message: "orders.place".into(),
            handler: Some("shop::mail".into()),
            payload: Some(vec![0, 0xff, 1]),
            code: "handler".into(),
            error: "ü".into(),
            attempts: 3,
            message_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            failed_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            stage: FailureStage::Publish,
            source: None,
            raw_headers: Some(Vec::new()),
        }
    }

    fn flat(fields: &Fields) -> Vec<Vec<u8>> {
        fields
            .pairs
            .iter()
            .flat_map(|(n, v)| [n.clone().into_bytes(), v.clone()])
            .collect()
    }

    #[test]
    fn a_record_comes_back_as_it_was() {
        let record = record();
        let (fields, micros) = encode(&record).unwrap_or_else(|| panic!("encodes"));
        assert_eq!(micros, 1_700_000_000_123_456);
        assert_eq!(decode(record.id, flat(&fields)), Ok(record));
    }

    #[test]
    fn stages_are_named_as_serde_names_them() {
        for stage in [
            FailureStage::Handler,
            FailureStage::Delivery,
            FailureStage::Publish,
            FailureStage::Compensation,
        ] {
            let serde = serde_json::to_string(&stage).unwrap_or_default();
            assert_eq!(serde, format!("\"{}\"", stage_name(stage)));
            assert_eq!(stage_named(stage_name(stage)), Some(stage));
        }
    }

    #[test]
    fn times_round_to_microseconds_both_ways() {
        let at = |nanos: i128| {
            let magnitude = Duration::from_nanos(nanos.unsigned_abs() as u64);
            if nanos >= 0 {
                SystemTime::UNIX_EPOCH + magnitude
            } else {
                SystemTime::UNIX_EPOCH - magnitude
            }
        };
        assert_eq!(micros_floor(at(1_500)), Some(1));
        assert_eq!(micros_ceil(at(1_500)), Some(2));
        assert_eq!(micros_ceil(at(2_000)), Some(2));
        assert_eq!(micros_floor(at(-1_500)), Some(-2));
        assert_eq!(micros_ceil(at(-1_500)), Some(-1));
        assert_eq!(time_of(-2), Some(at(-2_000)));
    }

    #[test]
    fn what_is_wrong_is_said() {
        let record = record();
        let (fields, _) = encode(&record).unwrap_or_else(|| panic!("encodes"));
        let without = |name: &str| {
            let mut pairs = fields.pairs.clone();
            pairs.retain(|(n, _)| n != name);
            decode(record.id, flat(&Fields { pairs, bytes: 0 }))
        };
        assert_eq!(without("message"), Err("field `message` is missing".into()));
        assert_eq!(
            without("header.1.value"),
            Err("field `header.1.value` is missing".into())
        );
        assert!(decode(Uuid::now_v7(), flat(&fields)).is_err(), "another id");
        assert!(decode(record.id, vec![b"id".to_vec()]).is_err(), "odd");
    }
}
