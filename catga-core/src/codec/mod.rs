//! Codecs: how a message becomes bytes and back.
//!
//! The bytes path ([`Catga::dispatch_bytes`](crate::Catga::dispatch_bytes)) and the transports
//! use a [`Codec`]; on the wire, the envelope's content type names it ([`WireFormat`]).
//! [`Json`] is the default: readable, cross-language. [`MessagePack`] is the compact binary
//! one. Both are self-describing, so a receiver accepts a payload with fields it does not know
//! and a newer sender can add a field without breaking an older receiver (see
//! `docs/transports.md`, "Evolving a message").
//!
//! Decoding is bounded whatever the bytes: a payload is refused before decoding when it is
//! larger than the application's `max_payload_bytes`, and when it nests deeper than
//! [`MAX_DEPTH`] arrays or maps ([`CodecError::TooDeep`]), in debug and release builds alike.

mod depth;
mod json;
mod msgpack;
mod objects;

pub use depth::MAX_DEPTH;
pub use json::Json;
pub use msgpack::MessagePack;
pub(crate) use msgpack::{in_format, json_into, json_of};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not become a message, or a message bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed {codec} payload for `{type_name}`: {source}")]
    Malformed {
        /// The codec's name.
        codec: &'static str,
        /// The Rust type that was expected.
        type_name: &'static str,
        /// The codec's own error, with its position.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The payload nests more than `limit` ([`MAX_DEPTH`]) arrays or maps; it was not
    /// decoded (a decoder recurses once per level, and the thread's stack is finite).
    #[error("{codec} payload for `{type_name}` nests more than {limit} arrays or maps")]
    TooDeep {
        /// The codec's name.
        codec: &'static str,
        /// The Rust type that was expected.
        type_name: &'static str,
        /// The most levels allowed.
        limit: usize,
    },
    /// The value could not be encoded (e.g. a map with non-string keys in JSON).
    #[error("cannot encode `{type_name}` as {codec}: {source}")]
    Encode {
        /// The codec's name.
        codec: &'static str,
        /// The Rust type being encoded.
        type_name: &'static str,
        /// The codec's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The payload is larger than the configured limit; it was not decoded.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The message was declared `local` and has no wire form.
    #[error("`{name}` is declared `local`: it has no wire form")]
    NotWire {
        /// The message's wire name.
        name: &'static str,
    },
}

/// Turns values into bytes and back. Implementations must not panic on any input.
pub trait Codec: Send + Sync + 'static {
    /// A short name for errors and headers, e.g. `json`.
    const NAME: &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a `T` from `bytes`; unknown extra fields are accepted.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// Which codec a payload is in: what the envelope's content type says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// `application/json`.
    #[default]
    Json,
    /// `application/msgpack` (MessagePack maps with field names).
    MessagePack,
}

impl WireFormat {
    /// The MIME type carried in the envelope.
    pub const fn content_type(self) -> &'static str {
        match self {
            WireFormat::Json => "application/json",
            WireFormat::MessagePack => "application/msgpack",
        }
    }

    /// The format a content type names.
    pub fn from_content_type(content_type: &str) -> Option<WireFormat> {
        match content_type.split(';').next().map(str::trim) {
            Some("application/json") => Some(WireFormat::Json),
            Some("application/msgpack" | "application/x-msgpack") => Some(WireFormat::MessagePack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    proptest! {
        #[test]
        fn json_round_trips(id: u64, name in ".*", tags in proptest::collection::vec(".*", 0..4)) {
            let v = Sample { id, name, tags };
            let bytes = Json.encode(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Sample = Json.decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, v);
        }

        #[test]
        fn json_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Json.decode::<Sample>(&bytes);
        }
    }

    proptest! {
        #[test]
        fn msgpack_round_trips(id: u64, name in ".*", tags in proptest::collection::vec(".*", 0..4)) {
            let v = Sample { id, name, tags };
            let bytes = MessagePack.encode(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Sample = MessagePack.decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, v);
        }

        #[test]
        fn msgpack_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = MessagePack.decode::<Sample>(&bytes);
        }

        #[test]
        fn truncated_encodings_are_typed_errors(id: u64, name in ".{1,20}", cut in 0usize..100) {
            let v = Sample { id, name, tags: vec!["t".into()] };
            for bytes in [Json.encode(&v).unwrap(), MessagePack.encode(&v).unwrap()] {
                let cut = cut % bytes.len();
                prop_assert!(Json.decode::<Sample>(&bytes[..cut]).is_err());
                prop_assert!(MessagePack.decode::<Sample>(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_struct_is_read_from_an_object_only_and_trailing_bytes_are_refused() {
        let object = br#"{"id": 7, "name": "n", "tags": ["a"]}"#;
        let read: Sample = Json.decode(object).unwrap();
        assert_eq!(read.id, 7);
        // serde_json alone would accept the array form; catga's decoder never compiles it.
        let array = br#"[7, "n", ["a"]]"#;
        assert!(matches!(
            Json.decode::<Sample>(array),
            Err(CodecError::Malformed { .. })
        ));
        // Nested values and outputs are read as serde_json reads them.
        let pair: (u64, String) = Json.decode(br#"[1, "x"]"#).unwrap();
        assert_eq!(pair, (1, "x".to_string()));
        assert!(matches!(
            Json.decode::<Sample>(br#"{"id": 7, "name": "n", "tags": []} x"#),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn msgpack_accepts_unknown_fields_too() {
        #[derive(serde::Serialize)]
        struct SampleV2 {
            id: u64,
            name: String,
            tags: Vec<String>,
            added_in_v2: bool,
        }
        let newer = SampleV2 {
            id: 1,
            name: "a".into(),
            tags: vec![],
            added_in_v2: true,
        };
        let v: Sample = MessagePack
            .decode(&MessagePack.encode(&newer).unwrap())
            .unwrap();
        assert_eq!(v.id, 1);
    }

    #[test]
    fn content_types_name_formats() {
        for format in [WireFormat::Json, WireFormat::MessagePack] {
            assert_eq!(
                WireFormat::from_content_type(format.content_type()),
                Some(format)
            );
        }
        assert_eq!(
            WireFormat::from_content_type("application/json; charset=utf-8"),
            Some(WireFormat::Json)
        );
        assert_eq!(WireFormat::from_content_type("text/plain"), None);
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let v: Sample = Json
            .decode(br#"{"id":1,"name":"a","tags":[],"added_in_v2":true}"#)
            .unwrap();
        assert_eq!(v.id, 1);
    }

    #[test]
    fn truncated_input_is_a_typed_error() {
        let err = Json.decode::<Sample>(br#"{"id":1,"na"#).unwrap_err();
        assert!(
            matches!(err, CodecError::Malformed { codec: "json", .. }),
            "{err}"
        );
    }
}
