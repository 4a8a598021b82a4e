//! Codecs: how a message becomes bytes and back.
//!
//! The bytes path ([`Catga::dispatch_bytes`](crate::Catga::dispatch_bytes)) and, later, the
//! transports use a [`Codec`]. [`Json`] is the default: it is readable, cross-language, and
//! tolerant of unknown fields, so a newer sender can add a field without breaking an older
//! receiver.

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

/// JSON through `serde_json`: the default codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::Encode {
            codec: Self::NAME,
            type_name: std::any::type_name::<T>(),
            source: Box::new(e),
        })
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed {
            codec: Self::NAME,
            type_name: std::any::type_name::<T>(),
            source: Box::new(e),
        })
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
