//! MessagePack through `rmp-serde`: the compact binary codec.
//!
//! Structs are encoded as maps with field names, not as positional arrays: a few bytes more
//! per field, but self-describing, so fields can be added and reordered without breaking the
//! other side, as with JSON. Why not postcard: see `docs/transports.md`.
//!
//! **Transcoded through JSON.** A value is serialized with `serde_json` and the JSON is
//! transcoded to MessagePack (`serde-transcode`, a streaming pass with no intermediate tree);
//! decoding runs the other way. The only code generic over the message type is then
//! `serde_json`'s, which the JSON codec instantiates anyway: a message costs one serde
//! instantiation per direction instead of one per codec. Measured on a generated crate of 100
//! commands (`benches/compile-time/run.py`), `rmp-serde` instantiated per message was the
//! largest single share of the LLVM IR catga generated. The price is paid at run time, by
//! MessagePack users only (`benches/codecs.rs`), and in the data model, which is JSON's:
//! non-finite floats are written as nil (as `serde_json` writes `null`), map keys as strings,
//! and byte strings as arrays of integers. MessagePack written by another program is read
//! whatever it holds: bin values arrive as arrays of integers, which `Vec<u8>` and
//! `serde_bytes` fields accept.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, Json, MAX_DEPTH, depth};

/// MessagePack (maps with field names) through `rmp-serde`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagePack;

impl Codec for MessagePack {
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let type_name = std::any::type_name::<T>();
        let json = Json.encode(value).map_err(|e| relabel(e, type_name))?;
        json_into(super::WireFormat::MessagePack, json, type_name)
    }

    /// Refuses a payload nesting more than [`MAX_DEPTH`](super::MAX_DEPTH) arrays or maps
    /// before decoding it (`rmp-serde`'s own limit is deeper than a debug build's stack
    /// allows, and does not count enums; see the `depth` module).
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let type_name = std::any::type_name::<T>();
        let json = json_of(super::WireFormat::MessagePack, bytes, type_name)?;
        Json.decode(&json).map_err(|e| relabel(e, type_name))
    }
}

/// `bytes` in `format` as JSON: borrowed when they are JSON already. Code generic over a
/// message decodes the result with [`Json`] only, so it is compiled once per type.
pub(crate) fn json_of<'b>(
    format: super::WireFormat,
    bytes: &'b [u8],
    type_name: &'static str,
) -> Result<std::borrow::Cow<'b, [u8]>, CodecError> {
    match format {
        super::WireFormat::Json => Ok(std::borrow::Cow::Borrowed(bytes)),
        super::WireFormat::MessagePack => {
            if depth::msgpack_within(bytes, MAX_DEPTH).is_err() {
                return Err(CodecError::TooDeep {
                    codec: MessagePack::NAME,
                    type_name,
                    limit: MAX_DEPTH,
                });
            }
            msgpack_to_json(bytes)
                .map(std::borrow::Cow::Owned)
                .map_err(|source| CodecError::Malformed {
                    codec: MessagePack::NAME,
                    type_name,
                    source,
                })
        }
    }
}

/// JSON written by [`Json`] as `format`: unchanged for JSON. The counterpart of [`json_of`].
pub(crate) fn json_into(
    format: super::WireFormat,
    json: Vec<u8>,
    type_name: &'static str,
) -> Result<Vec<u8>, CodecError> {
    match format {
        super::WireFormat::Json => Ok(json),
        super::WireFormat::MessagePack => {
            json_to_msgpack(&json).map_err(|source| CodecError::Encode {
                codec: MessagePack::NAME,
                type_name,
                source,
            })
        }
    }
}

/// A JSON decoding error of a payload that arrived as `format`, reported as that codec's.
pub(crate) fn in_format(format: super::WireFormat, error: CodecError) -> CodecError {
    match format {
        super::WireFormat::Json => error,
        super::WireFormat::MessagePack => {
            let type_name: &'static str = match &error {
                CodecError::Encode { type_name, .. }
                | CodecError::Malformed { type_name, .. }
                | CodecError::TooDeep { type_name, .. } => type_name,
                _ => return error,
            };
            relabel(error, type_name)
        }
    }
}

/// The JSON codec's error, reported as this codec's (the JSON is an internal step).
fn relabel(error: CodecError, type_name: &'static str) -> CodecError {
    match error {
        CodecError::Encode { source, .. } => CodecError::Encode {
            codec: MessagePack::NAME,
            type_name,
            source,
        },
        CodecError::Malformed { source, .. } => CodecError::Malformed {
            codec: MessagePack::NAME,
            type_name,
            source,
        },
        CodecError::TooDeep { limit, .. } => CodecError::TooDeep {
            codec: MessagePack::NAME,
            type_name,
            limit,
        },
        other => other,
    }
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// One JSON value as MessagePack (maps keep their string keys, so structs stay named).
fn json_to_msgpack(json: &[u8]) -> Result<Vec<u8>, Source> {
    let mut out = Vec::with_capacity(json.len());
    let mut reader = serde_json::Deserializer::from_slice(json);
    let mut writer = rmp_serde::Serializer::new(&mut out).with_struct_map();
    serde_transcode::transcode(&mut reader, &mut writer)?;
    Ok(out)
}

/// The first MessagePack value of `bytes` as JSON (what follows it is ignored, as
/// `rmp_serde::from_slice` ignores it).
fn msgpack_to_json(bytes: &[u8]) -> Result<Vec<u8>, Source> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
    let mut reader = rmp_serde::Deserializer::from_read_ref(bytes);
    let mut writer = serde_json::Serializer::new(&mut out);
    serde_transcode::transcode(&mut reader, &mut writer)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Line {
        Gift,
        Item { sku: String, qty: u32 },
        Note(String),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        total: f64,
        delta: i64,
        paid: bool,
        coupon: Option<String>,
        blob: Vec<u8>,
        lines: Vec<Line>,
        by_warehouse: BTreeMap<u64, u32>,
    }

    fn order() -> Order {
        Order {
            id: u64::MAX,
            total: 12.5,
            delta: -3,
            paid: true,
            coupon: None,
            blob: vec![0, 1, 255],
            lines: vec![
                Line::Gift,
                Line::Item {
                    sku: "é-1".into(),
                    qty: 2,
                },
                Line::Note("n".into()),
            ],
            by_warehouse: BTreeMap::from([(7, 1), (9, 2)]),
        }
    }

    #[test]
    fn a_message_round_trips_through_the_transcoding_codec() -> Result<(), CodecError> {
        let bytes = MessagePack.encode(&order())?;
        assert_eq!(MessagePack.decode::<Order>(&bytes)?, order());
        Ok(())
    }

    /// What another MessagePack program writes (here `rmp-serde` itself, structs as maps) is
    /// read, and what this codec writes is read by it: the wire format did not change.
    #[test]
    fn the_bytes_interoperate_with_rmp_serde() -> Result<(), Box<dyn std::error::Error>> {
        let theirs = rmp_serde::to_vec_named(&order())?;
        assert_eq!(MessagePack.decode::<Order>(&theirs)?, order());
        // What this codec writes has JSON's data model: byte strings are arrays (which
        // `rmp-serde` reads back into the same value) and integer map keys are strings
        // (which only a reader that accepts them, as this codec does, reads back).
        #[derive(Deserialize)]
        struct Keys {
            by_warehouse: BTreeMap<String, u32>,
        }
        let ours = MessagePack.encode(&order())?;
        let keys = rmp_serde::from_slice::<Keys>(&ours)?.by_warehouse;
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["7", "9"]);
        let mut without_keys = order();
        without_keys.by_warehouse.clear();
        let ours = MessagePack.encode(&without_keys)?;
        assert_eq!(rmp_serde::from_slice::<Order>(&ours)?, without_keys);
        Ok(())
    }

    #[test]
    fn malformed_bytes_and_wrong_shapes_are_typed_errors() {
        assert!(matches!(
            MessagePack.decode::<Order>(&[0xc1]),
            Err(CodecError::Malformed {
                codec: "msgpack",
                ..
            })
        ));
        let not_an_order = rmp_serde::to_vec_named(&("a", 1)).unwrap_or_default();
        assert!(matches!(
            MessagePack.decode::<Order>(&not_an_order),
            Err(CodecError::Malformed {
                codec: "msgpack",
                ..
            })
        ));
    }
}
