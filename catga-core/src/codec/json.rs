//! JSON through `serde_json`: the default codec.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError};

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
