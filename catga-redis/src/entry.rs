//! Stream entries: reading them out of the server's replies, and turning their fields into an
//! envelope.
//!
//! Replies are parsed from raw [`Value`]s rather than through the client's typed stream
//! replies because those need field names to be UTF-8: an entry someone added with binary
//! field names would make a whole batch unreadable, again on every read, and stall the
//! consumer. Here such an entry is just one bad entry, rejected on its own.

use std::sync::Arc;

use catga_core::envelope::Envelope;
use redis::Value;

use crate::keys::{PAYLOAD_FIELD, REPLY_TO_FIELD};

/// One entry as read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its stream's key (shared by the entries of one read).
    pub stream: Arc<str>,
    /// Its id (`1712345678901-0`).
    pub id: String,
    /// Its fields, in order; `None` when it was deleted (trimmed) while still pending, which
    /// the server reports as an entry without fields.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A reply that does not have the shape its command promises.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply to `{command}`: {why}")]
pub(crate) struct ShapeError {
    command: &'static str,
    why: &'static str,
}

impl ShapeError {
    pub fn new(command: &'static str, why: &'static str) -> Self {
        ShapeError { command, why }
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn string(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}

/// A RESP2 array or a RESP3 map, as a flat list of items.
fn items(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Map(pairs) => Some(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

fn pairs(flat: Vec<Value>) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if !flat.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((bytes(k)?, bytes(v)?));
    }
    Some(out)
}

/// `[[id, [field, value, …] | nil], …]`: the entries of `stream` in an `XREADGROUP`,
/// `XCLAIM` or `XAUTOCLAIM` reply.
pub(crate) fn entries(
    command: &'static str,
    stream: &str,
    value: Value,
) -> Result<Vec<Entry>, ShapeError> {
    let shape = |why| ShapeError::new(command, why);
    let list = items(value).ok_or_else(|| shape("entries are not an array"))?;
    let stream: Arc<str> = Arc::from(stream);
    let mut out = Vec::with_capacity(list.len());
    for raw in list {
        let mut parts = items(raw)
            .ok_or_else(|| shape("an entry is not an array"))?
            .into_iter();
        let id = parts
            .next()
            .and_then(string)
            .ok_or_else(|| shape("an entry has no id"))?;
        let fields = match parts.next() {
            None | Some(Value::Nil) => None,
            Some(fields) => Some(
                items(fields)
                    .and_then(pairs)
                    .ok_or_else(|| shape("an entry's fields are not pairs"))?,
            ),
        };
        out.push(Entry {
            stream: stream.clone(),
            id,
            fields,
        });
    }
    Ok(out)
}

/// An `XREADGROUP` or `XREAD` reply (`command`): per stream (in the server's order), its
/// entries. Nil (nothing arrived within the block time) is no streams.
pub(crate) fn read_reply(
    command: &'static str,
    value: Value,
) -> Result<Vec<(String, Vec<Entry>)>, ShapeError> {
    let shape = |why| ShapeError::new(command, why);
    let mut out = Vec::new();
    match value {
        Value::Nil => {}
        // RESP3: a map from stream to entries.
        Value::Map(streams) => {
            for (key, list) in streams {
                let key = string(key).ok_or_else(|| shape("a stream key is not a string"))?;
                let entries = entries(command, &key, list)?;
                out.push((key, entries));
            }
        }
        // RESP2: `[[stream, entries], …]`.
        other => {
            for stream in items(other).ok_or_else(|| shape("not an array"))? {
                let mut parts = items(stream)
                    .ok_or_else(|| shape("a stream is not an array"))?
                    .into_iter();
                let key = parts
                    .next()
                    .and_then(string)
                    .ok_or_else(|| shape("a stream key is not a string"))?;
                let entries = entries(command, &key, parts.next().unwrap_or(Value::Nil))?;
                out.push((key, entries));
            }
        }
    }
    Ok(out)
}

/// An `XAUTOCLAIM` reply: the cursor to continue from (`0-0` when the scan is complete) and
/// the entries now claimed. Entries that no longer exist are dropped from the pending list by
/// the server itself (Redis 7), so they need nothing here.
pub(crate) fn autoclaim_reply(
    stream: &str,
    value: Value,
) -> Result<(String, Vec<Entry>), ShapeError> {
    const CMD: &str = "XAUTOCLAIM";
    let mut parts = items(value)
        .ok_or_else(|| ShapeError::new(CMD, "not an array"))?
        .into_iter();
    let cursor = parts
        .next()
        .and_then(string)
        .ok_or_else(|| ShapeError::new(CMD, "no cursor"))?;
    let claimed = entries(CMD, stream, parts.next().unwrap_or(Value::Nil))?;
    Ok((cursor, claimed))
}

/// `XPENDING … start end count consumer`: each entry's id and how often it was delivered.
pub(crate) fn pending_counts(value: Value) -> Result<Vec<(String, u64)>, ShapeError> {
    const CMD: &str = "XPENDING";
    let shape = |why| ShapeError::new(CMD, why);
    let mut out = Vec::new();
    for row in items(value).ok_or_else(|| shape("not an array"))? {
        let mut parts = items(row).ok_or_else(|| shape("a row is not an array"))?;
        // [id, consumer, idle ms, deliveries]
        if parts.len() < 4 {
            return Err(shape("a row has fewer than four fields"));
        }
        let deliveries = match parts.swap_remove(3) {
            Value::Int(n) => u64::try_from(n).unwrap_or(0),
            other => string(other)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| shape("a delivery count is not a number"))?,
        };
        let id = string(parts.swap_remove(0)).ok_or_else(|| shape("an id is not a string"))?;
        out.push((id, deliveries));
    }
    Ok(out)
}

/// What an entry carries: the envelope, and for a request the list its reply goes to.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub envelope: Envelope,
    pub reply_to: Option<String>,
}

/// Why an entry is not an envelope.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    /// The entry no longer exists.
    #[error("the entry was deleted (trimmed) before it was handled")]
    Deleted,
    /// A field's name or value other than the payload is not UTF-8.
    #[error("field `{0}` is not UTF-8")]
    NotUtf8(String),
    /// No payload field.
    #[error("the entry has no `{PAYLOAD_FIELD}` field")]
    NoPayload,
    /// The headers do not make an envelope.
    #[error(transparent)]
    Envelope(#[from] catga_core::envelope::EnvelopeError),
}

/// `bytes` as text; the error names the field they belong to.
fn utf8<'a>(field: &[u8], bytes: &'a [u8]) -> Result<&'a str, EntryError> {
    std::str::from_utf8(bytes)
        .map_err(|_| EntryError::NotUtf8(String::from_utf8_lossy(field).into_owned()))
}

impl Entry {
    /// The payload field's bytes if there is one (kept with a rejected entry), else nothing.
    pub fn payload(&self) -> Vec<u8> {
        self.fields
            .iter()
            .flatten()
            .find(|(k, _)| k == PAYLOAD_FIELD.as_bytes())
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The envelope the fields describe (see [`crate::keys`] for the two transport fields).
    pub fn decode(&self) -> Result<Decoded, EntryError> {
        let fields = self.fields.as_ref().ok_or(EntryError::Deleted)?;
        let mut headers = Vec::with_capacity(fields.len());
        let (mut payload, mut reply_to) = (None, None);
        for (name, value) in fields {
            let name = utf8(name, name)?;
            if name == PAYLOAD_FIELD {
                payload = Some(value.clone());
            } else if name == REPLY_TO_FIELD {
                reply_to = Some(utf8(name.as_bytes(), value)?.to_string());
            } else {
                headers.push((name, utf8(name.as_bytes(), value)?));
            }
        }
        let payload = payload.ok_or(EntryError::NoPayload)?;
        let envelope = Envelope::from_headers(headers, payload)?;
        Ok(Decoded { envelope, reply_to })
    }
}

/// Calls `add` with each stream field of `envelope`: its headers, then the payload (a
/// callback, so a command and a script invocation are filled without copying).
pub(crate) fn each_field(envelope: &Envelope, mut add: impl FnMut(&[u8], &[u8])) {
    for (name, value) in envelope.to_headers() {
        add(name.as_bytes(), value.as_bytes());
    }
    add(PAYLOAD_FIELD.as_bytes(), &envelope.payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use catga_core::context::Context;
    use catga_core::{MessageKind, WireFormat};

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry_value(id: &str, fields: &[(&[u8], &[u8])]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id.as_bytes()), Value::Array(flat)])
    }

    #[test]
    fn resp2_and_resp3_read_replies_agree() {
        let entries = Value::Array(vec![
            entry_value("1-0", &[(b"a", b"1")]),
            Value::Array(vec![bulk(b"2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"s"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"s"), entries)]);
        let expected = vec![(
            "s".to_string(),
            vec![
                Entry {
                    stream: "s".into(),
                    id: "1-0".into(),
                    fields: Some(vec![(b"a".to_vec(), b"1".to_vec())]),
                },
                Entry {
                    stream: "s".into(),
                    id: "2-0".into(),
                    fields: None,
                },
            ],
        )];
        assert_eq!(read_reply("XREADGROUP", resp2).unwrap(), expected);
        assert_eq!(read_reply("XREADGROUP", resp3).unwrap(), expected);
        assert!(read_reply("XREADGROUP", Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn binary_field_names_are_one_bad_entry_not_a_bad_batch() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(vec![entry_value("1-0", &[(b"\xff\xfe", b"x")])]),
        ])]);
        let streams = read_reply("XREADGROUP", reply).unwrap();
        let entry = &streams[0].1[0];
        assert!(matches!(entry.decode(), Err(EntryError::NotUtf8(_))));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for value in [
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![
                bulk(b"s"),
                Value::Array(vec![Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"odd")]),
                ])]),
            ])]),
        ] {
            assert!(read_reply("XREAD", value).is_err());
        }
    }

    #[test]
    fn autoclaim_and_pending_replies_parse() {
        let reply = Value::Array(vec![
            bulk(b"0-0"),
            Value::Array(vec![entry_value("5-0", &[(b"k", b"v")])]),
            Value::Array(vec![]),
        ]);
        let (cursor, claimed) = autoclaim_reply("s", reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(claimed[0].id, "5-0");

        let pending = Value::Array(vec![Value::Array(vec![
            bulk(b"5-0"),
            bulk(b"c1"),
            Value::Int(1200),
            Value::Int(3),
        ])]);
        assert_eq!(pending_counts(pending).unwrap(), vec![("5-0".into(), 3)]);
    }

    #[test]
    fn an_envelope_survives_the_fields_and_the_reply_key_is_taken_out() {
        let ctx = Context::new().with_header("tenant", "acme");
        let env = Envelope::with_payload(
            "Ship",
            MessageKind::Command,
            &ctx,
            WireFormat::Json,
            b"{\"x\":1}".to_vec(),
        );
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = env
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect();
        fields.push((PAYLOAD_FIELD.into(), env.payload.clone()));
        fields.push((REPLY_TO_FIELD.into(), b"p:replies:1".to_vec()));
        let entry = Entry {
            stream: "p:requests:Ship".into(),
            id: "1-0".into(),
            fields: Some(fields),
        };
        let decoded = entry.decode().unwrap();
        assert_eq!(decoded.envelope, env);
        assert_eq!(decoded.reply_to.as_deref(), Some("p:replies:1"));
        assert_eq!(entry.payload(), b"{\"x\":1}");
    }

    #[test]
    fn entries_that_are_not_envelopes_say_why() {
        let deleted = Entry {
            stream: "s".into(),
            id: "1-0".into(),
            fields: None,
        };
        assert!(matches!(deleted.decode(), Err(EntryError::Deleted)));
        let no_payload = Entry {
            fields: Some(vec![(b"catga-id".to_vec(), b"x".to_vec())]),
            ..deleted.clone()
        };
        assert!(matches!(no_payload.decode(), Err(EntryError::NoPayload)));
        let bad = Entry {
            fields: Some(vec![
                (b"catga-id".to_vec(), b"not-a-uuid".to_vec()),
                (PAYLOAD_FIELD.into(), Vec::new()),
            ]),
            ..deleted
        };
        assert!(matches!(bad.decode(), Err(EntryError::Envelope(_))));
    }
}
