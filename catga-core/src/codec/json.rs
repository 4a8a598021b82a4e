//! JSON through `serde_json`: the default codec.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::ObjectsOnly;
use super::{Codec, CodecError, MAX_DEPTH};

/// JSON through `serde_json`: the default codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        // `match` and a non-generic error function: this body is compiled once per type.
        // The serializer is driven directly rather than through `serde_json::to_vec`, whose
        // two wrapper functions would be compiled for every type too.
        let mut out = Vec::with_capacity(128);
        match value.serialize(&mut serde_json::Serializer::new(&mut out)) {
            Ok(()) => Ok(out),
            Err(e) => Err(encode_error(e, std::any::type_name::<T>())),
        }
    }

    /// `serde_json` refuses a payload nesting more than [`MAX_DEPTH`] arrays or objects
    /// itself (its fixed recursion limit); that refusal is reported as
    /// [`CodecError::TooDeep`].
    ///
    /// A struct is read from a JSON object (the form every encoder writes), not from an
    /// array of its fields (see `codec/objects.rs`).
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = match T::deserialize(ObjectsOnly(&mut deserializer)) {
            Ok(value) => value,
            Err(e) => return Err(decode_error(e, std::any::type_name::<T>())),
        };
        // Only whitespace may follow the value, as `serde_json::from_slice` requires.
        match deserializer.end() {
            Ok(()) => Ok(value),
            Err(e) => Err(decode_error(e, std::any::type_name::<T>())),
        }
    }
}

#[cold]
fn encode_error(e: serde_json::Error, type_name: &'static str) -> CodecError {
    CodecError::Encode {
        codec: Json::NAME,
        type_name,
        source: Box::new(e),
    }
}

#[cold]
fn decode_error(e: serde_json::Error, type_name: &'static str) -> CodecError {
    if too_deep(&e) {
        return CodecError::TooDeep {
            codec: Json::NAME,
            type_name,
            limit: MAX_DEPTH,
        };
    }
    CodecError::Malformed {
        codec: Json::NAME,
        type_name,
        source: Box::new(e),
    }
}

/// Whether `serde_json` stopped at its recursion limit. It has no error code for it in its
/// API, only this message (unchanged since the limit was added; `tests/decoding.rs` pins it).
fn too_deep(error: &serde_json::Error) -> bool {
    error.classify() == serde_json::error::Category::Syntax
        && error.to_string().starts_with("recursion limit exceeded")
}
