//! The top-level deserializer of a JSON payload: serde_json's, with a struct read from an
//! object only.
//!
//! serde_json reads a struct from an object or from an array of its fields, so a message's
//! derived `Deserialize` is compiled twice over (`visit_map` and `visit_seq`, and serde_json's
//! `deserialize_struct` with both branches) for every message type. catga writes a struct as
//! an object (and MessagePack, transcoded, arrives as one), so the top level asks serde_json
//! for a map: the array form is never compiled, a few percent of the code a service's
//! messages compile to (benches/compile-time). Everything else is serde_json's, unchanged;
//! nested values are read by serde_json itself.

use serde::de::{Deserializer, Visitor};
use serde_json::de::SliceRead;

/// serde_json's deserializer over a payload, reading a top-level struct as an object.
pub(super) struct ObjectsOnly<'a, 'de>(pub(super) &'a mut serde_json::Deserializer<SliceRead<'de>>);

/// Forwards each method to serde_json's deserializer.
macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for ObjectsOnly<'_, 'de> {
    type Error = serde_json::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    /// A struct is read from an object only (see the module's documentation).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }
}
