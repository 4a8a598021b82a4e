//! A [`Scheduled`] message as the fields of its Redis hash, and back.
//!
//! | field | value |
//! |---|---|
//! | `due` | when it is due: microseconds since 1970, decimal (negative before) |
//! | `fields` | how many envelope fields follow, decimal |
//! | `<i>.<name>` | the envelope's `i`-th field (from 0), as the transport writes it to a stream entry |
//!
//! The envelope's fields are the transport's ([`each_field`]): its headers (`catga-id`,
//! `catga-name`, …, then the user's headers in order) and last `catga-payload`, the payload
//! byte for byte. A hash keeps no order and one value per field name, so each name is
//! numbered: headers come back in order, duplicates included, and are read back by the
//! transport's own decoder ([`Entry::decode`]). A hash with any other field, a missing one, or
//! a value the decoder refuses is not one the store wrote.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::store::schedule::Scheduled;
use uuid::Uuid;

use crate::entry::{Entry, each_field};

/// The hash field holding the due time.
const DUE: &[u8] = b"due";
/// The hash field holding how many envelope fields there are.
const COUNT: &[u8] = b"fields";

/// The farthest due time from 1970 kept, in microseconds: 2^53 (about 285 years), the
/// largest whole number a sorted set's score (a double) holds exactly.
pub(super) const FARTHEST_MICROS: i64 = 1 << 53;

/// A message's hash fields (name, value), and their total size in bytes.
pub(super) struct Fields {
    pub(super) pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) bytes: usize,
}

/// `time` in microseconds since 1970, rounded down (so a message falls due a little early
/// rather than late); `None` beyond [`FARTHEST_MICROS`] either way.
pub(super) fn micros(time: SystemTime) -> Option<i64> {
    let micros = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok()?,
        Err(before) => {
            let before = before.duration();
            let partial = u128::from(!before.subsec_nanos().is_multiple_of(1000));
            -i64::try_from(before.as_micros() + partial).ok()?
        }
    };
    (micros.abs() <= FARTHEST_MICROS).then_some(micros)
}

/// The time `micros` microseconds from 1970.
pub(super) fn time_of(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// A sorted-set score as the server writes it (`1700000000123456`), as whole microseconds
/// within [`FARTHEST_MICROS`]; `None` for anything else (a fraction, `inf`, not a number).
pub(super) fn score_micros(score: &[u8]) -> Option<i64> {
    let score: f64 = std::str::from_utf8(score).ok()?.parse().ok()?;
    let farthest = FARTHEST_MICROS as f64;
    if !score.is_finite() || score.fract() != 0.0 || score.abs() > farthest {
        return None;
    }
    // Whole and within ±2^53: exact as an i64.
    Some(score as i64)
}

/// A decimal the store wrote: an optional `-`, then digits without a leading zero (or `0`).
fn decimal(digits: &[u8]) -> Option<i64> {
    let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
    let canonical = match unsigned {
        [b'0'] => digits.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical || unsigned.len() > 18 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `message` as hash fields, and its due time in microseconds; `None` if it is due more than
/// [`FARTHEST_MICROS`] from 1970.
pub(super) fn encode(message: &Scheduled) -> Option<(Fields, i64)> {
    let due = micros(message.due)?;
    let mut pairs = Vec::with_capacity(16 + message.envelope.headers.len());
    pairs.push((DUE.to_vec(), due.to_string().into_bytes()));
    pairs.push((COUNT.to_vec(), Vec::new()));
    let mut count = 0usize;
    each_field(&message.envelope, |name, value| {
        let mut numbered = format!("{count}.").into_bytes();
        numbered.extend_from_slice(name);
        pairs.push((numbered, value.to_vec()));
        count += 1;
    });
    pairs[1].1 = count.to_string().into_bytes();
    let bytes = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    Some((Fields { pairs, bytes }, due))
}

/// The message in `flat` (`HGETALL`'s field, value, field, value, …) kept at `key` under the
/// id `id`, and its due time in microseconds; or what is wrong with it.
pub(super) fn decode(id: Uuid, key: &str, flat: Vec<Vec<u8>>) -> Result<(Scheduled, i64), String> {
    if !flat.len().is_multiple_of(2) {
        return Err(format!("{} items is not field/value pairs", flat.len()));
    }
    let mut fields: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.insert(name, value);
    }
    let mut number = |name: &[u8]| -> Result<i64, String> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let value = fields
            .remove(name)
            .ok_or_else(|| format!("field `{shown}` is missing"))?;
        decimal(&value).ok_or_else(|| {
            format!(
                "field `{shown}` is not a decimal number: {:?}",
                String::from_utf8_lossy(&value)
            )
        })
    };
    let due = number(DUE)?;
    let count = number(COUNT)?;
    let count = usize::try_from(count).map_err(|_| format!("{count} fields"))?;
    if fields.len() != count {
        return Err(format!(
            "`fields` says {count} envelope fields, and the hash holds {} other fields",
            fields.len()
        ));
    }
    let mut numbered: Vec<Option<(Vec<u8>, Vec<u8>)>> = vec![None; count];
    for (name, value) in fields {
        let shown = || String::from_utf8_lossy(&name).into_owned();
        let dot = name
            .iter()
            .position(|&b| b == b'.')
            .ok_or_else(|| format!("field `{}` is not one the store writes", shown()))?;
        let at = decimal(&name[..dot])
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < count)
            .ok_or_else(|| format!("field `{}` is not one the store writes", shown()))?;
        let slot = &mut numbered[at];
        if slot.is_some() {
            return Err(format!("two fields are numbered {at}"));
        }
        *slot = Some((name[dot + 1..].to_vec(), value));
    }
    // Every slot is filled: `count` distinct numbers below `count`.
    let entry = Entry {
        stream: Arc::from(key),
        id: id.to_string(),
        fields: Some(numbered.into_iter().flatten().collect()),
    };
    let decoded = entry
        .decode()
        .map_err(|e| format!("not an envelope: {e}"))?;
    if decoded.reply_to.is_some() {
        return Err("it names a reply list, which the store never writes".into());
    }
    if decoded.envelope.id != id {
        return Err(format!(
            "its envelope's id is {}, not {id}",
            decoded.envelope.id
        ));
    }
    let at = time_of(due).ok_or_else(|| format!("`due` {due} µs is out of range"))?;
    Ok((
        Scheduled {
            due: at,
            envelope: decoded.envelope,
        },
        due,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use catga_core::context::Context;
    use catga_core::envelope::Envelope;
    use catga_core::{MessageKind, WireFormat};

    fn message() -> Scheduled {
        let ctx = Context::new()
            .with_header("tenant", "acme")
            .with_header("tenant", "other");
        Scheduled {
            due: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            envelope: Envelope::with_payload(
                "orders.remind",
                MessageKind::Event,
                &ctx,
                WireFormat::Json,
                vec![0, 0xff, b'.', 1],
            ),
        }
    }

    fn flat(fields: &Fields) -> Vec<Vec<u8>> {
        fields
            .pairs
            .iter()
            .rev() // a hash keeps no order
            .flat_map(|(n, v)| [n.clone(), v.clone()])
            .collect()
    }

    #[test]
    fn a_message_comes_back_as_it_was() {
        let m = message();
        let (fields, due) = encode(&m).unwrap_or_else(|| panic!("encodes"));
        assert_eq!(due, 1_700_000_000_123_456);
        let back = decode(m.id(), "k", flat(&fields));
        assert_eq!(back, Ok((m, due)));
    }

    /// A message's hash fields, as a test edits them.
    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    #[test]
    fn what_is_wrong_is_said() {
        let m = message();
        let (fields, _) = encode(&m).unwrap_or_else(|| panic!("encodes"));
        let edited = |edit: &dyn Fn(&mut Pairs)| {
            let mut pairs = fields.pairs.clone();
            edit(&mut pairs);
            decode(m.id(), "k", flat(&Fields { pairs, bytes: 0 }))
        };
        let error = |edit: &dyn Fn(&mut Pairs)| edited(edit).expect_err("not one the store writes");
        assert!(error(&|p| p.retain(|(n, _)| n != b"due")).contains("`due` is missing"));
        assert!(error(&|p| p[0].1 = b"01".to_vec()).contains("not a decimal"));
        assert!(error(&|p| p[1].1 = b"99".to_vec()).contains("`fields` says 99"));
        assert!(error(&|p| p.push((b"extra".to_vec(), Vec::new()))).contains("holds"));
        assert!(error(&|p| p[2].0 = b"x.catga-id".to_vec()).contains("not one the store"));
        assert!(error(&|p| p[2].0 = b"3.catga-id".to_vec()).contains("numbered 3"));
        assert!(
            error(&|p| {
                p.pop();
            })
            .contains("holds")
        );
        let payload = |p: &mut Pairs| {
            let at = p.len() - 3;
            if let Some(last) = p.last_mut() {
                last.0 = format!("{at}.catga-other").into_bytes();
            }
        };
        assert!(error(&payload).contains("not an envelope"));
        assert!(decode(Uuid::now_v7(), "k", flat(&fields)).is_err(), "id");
        assert!(decode(m.id(), "k", vec![b"due".to_vec()]).is_err(), "odd");
    }

    #[test]
    fn times_and_scores_are_whole_microseconds_within_2_pow_53() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500);
        assert_eq!(micros(at), Some(1));
        assert_eq!(
            micros(SystemTime::UNIX_EPOCH - Duration::from_nanos(1_500)),
            Some(-2)
        );
        assert_eq!(
            time_of(-2),
            SystemTime::UNIX_EPOCH.checked_sub(Duration::from_micros(2))
        );
        let far = SystemTime::UNIX_EPOCH + Duration::from_micros(1 << 53);
        assert_eq!(micros(far), Some(FARTHEST_MICROS));
        assert_eq!(micros(far + Duration::from_micros(1)), None);
        assert_eq!(
            score_micros(b"1700000000123456"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(score_micros(b"-3"), Some(-3));
        for bad in [&b"1.5"[..], b"inf", b"-inf", b"nan", b"x", b"", b"1e300"] {
            assert_eq!(score_micros(bad), None, "{bad:?}");
        }
        assert_eq!(decimal(b"-12"), Some(-12));
        for bad in [
            &b"-0"[..],
            b"+1",
            b"01",
            b"",
            b"-",
            b" 1",
            b"1234567890123456789",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
