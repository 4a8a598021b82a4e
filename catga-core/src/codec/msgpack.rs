//! MessagePack through `rmp-serde`: the compact binary codec.
//!
//! Structs are encoded as maps with field names (`to_vec_named`), not as positional arrays:
//! a few bytes more per field, but self-describing, so fields can be added and reordered
//! without breaking the other side, as with JSON. Why not postcard: see `docs/transports.md`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, MAX_DEPTH, depth};

/// MessagePack (maps with field names) through `rmp-serde`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagePack;

impl Codec for MessagePack {
    const NAME: &'static str = "msgpack";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode {
            codec: Self::NAME,
            type_name: std::any::type_name::<T>(),
            source: Box::new(e),
        })
    }

    /// Refuses a payload nesting more than [`MAX_DEPTH`](super::MAX_DEPTH) arrays or maps
    /// before decoding it (`rmp-serde`'s own limit is deeper than a debug build's stack
    /// allows, and does not count enums; see the `depth` module).
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if depth::msgpack_within(bytes, MAX_DEPTH).is_err() {
            return Err(CodecError::TooDeep {
                codec: Self::NAME,
                type_name: std::any::type_name::<T>(),
                limit: MAX_DEPTH,
            });
        }
        rmp_serde::from_slice(bytes).map_err(|e| CodecError::Malformed {
            codec: Self::NAME,
            type_name: std::any::type_name::<T>(),
            source: Box::new(e),
        })
    }
}
