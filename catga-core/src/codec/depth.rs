//! How deep a payload may nest, and the check that keeps a decoder within it.
//!
//! serde decoders recurse once per nested array or map, so a payload's nesting is how deep
//! the decoding thread's stack goes: a kilobyte of `[[[[…]]]]` is enough to overflow a Tokio
//! worker's 2 MiB stack in a debug build, which aborts the whole process. Every payload is
//! therefore held to [`MAX_DEPTH`] nested containers, counting the message's own:
//!
//! * JSON: `serde_json` refuses its 128th nested array or object itself (a fixed budget of
//!   128 recursion steps, counted for every array, object and enum it enters), at no cost;
//!   its error becomes [`CodecError::TooDeep`](super::CodecError::TooDeep).
//! * MessagePack: `rmp-serde`'s own limit (1,024) is too deep for a debug build, and it does
//!   not count an enum written as a one-entry map, so an `enum Expr { Not(Box<Expr>), … }`
//!   nests without any bound (measured: some 3,100 levels overflow a 2 MiB debug stack). Before
//!   decoding, [`msgpack_within`] walks the bytes without recursion and refuses a payload
//!   that nests deeper than the limit, enums included.

/// The most arrays, maps and objects a payload may nest, the message's own included: a
/// message at this depth decodes, one level deeper is refused with
/// [`CodecError::TooDeep`](super::CodecError::TooDeep).
///
/// It is `serde_json`'s fixed limit (128 recursion steps allow 127 nested containers), and
/// MessagePack is held to the same so both codecs accept the same messages. Measured in a
/// debug build on a 2 MiB Tokio worker stack, a whole dispatch of a message nesting 127
/// levels (63 nodes) of a five-field recursive struct needs at most 694 KB of stack
/// (MessagePack; 335 KB with JSON), a `serde_json::Value` 465 KB (MessagePack): about a third
/// of the stack. Release builds need less.
pub const MAX_DEPTH: usize = 127;

/// Checks that the MessagePack value at the start of `bytes` nests at most `limit` arrays
/// and maps (`limit` is capped at [`MAX_DEPTH`]); `Err` carries the offset of the first
/// container past the limit.
///
/// Iterative and allocation-free: one step per encoded item, skipping string, binary and
/// extension data by their lengths. Malformed or truncated input is not judged here: the scan
/// stops where the encoding stops making sense, and the decoder reports the error. Up to that
/// point the bytes are a valid prefix, so the depth counted is the depth the decoder would
/// recurse to. Measured on the 284-byte order of `benches/codecs.rs` (48 items): about
/// 1,000 instructions, an eighth of what `rmp-serde` takes to decode it (8,100).
pub(crate) fn msgpack_within(bytes: &[u8], limit: usize) -> Result<(), usize> {
    let limit = limit.min(MAX_DEPTH);
    // Every container takes at least one byte: a payload this short cannot nest too deep.
    if bytes.len() <= limit {
        return Ok(());
    }
    // Items still to read in each open container but the innermost (a map's entries count
    // twice); the innermost's are in `left`.
    let mut outer = [0u64; MAX_DEPTH];
    let mut depth = 0usize;
    let mut left = 0u64;
    let mut at = 0usize;
    while let Some(&marker) = bytes.get(at) {
        let size = SCALAR_SIZE[usize::from(marker)];
        if size > 0 {
            at += usize::from(size);
        } else {
            match variable(marker, bytes, at) {
                Some(Item::Scalar { size }) => at = at.saturating_add(size),
                Some(Item::Container { header, items }) => {
                    if depth == limit {
                        return Err(at);
                    }
                    at += header;
                    if items > 0 {
                        outer[depth] = left;
                        depth += 1;
                        left = items;
                        continue;
                    }
                }
                None => return Ok(()), // Malformed or truncated: the decoder says why.
            }
        }
        // A complete item (a scalar or an empty container) fills a place in its parent,
        // which may complete the parent in turn.
        loop {
            if depth == 0 {
                return Ok(()); // The top-level value is complete.
            }
            left -= 1;
            if left > 0 {
                break;
            }
            depth -= 1;
            left = outer[depth];
        }
    }
    Ok(())
}

/// The whole size of an item whose size its marker alone gives (fixints, nil, booleans,
/// fixstr, numbers, fixext); 0 for the others.
static SCALAR_SIZE: [u8; 256] = {
    let mut sizes = [0u8; 256];
    let mut marker = 0usize;
    while marker < 256 {
        sizes[marker] = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
            // fixstr: the length is in the marker.
            0xa0..=0xbf => 1 + (marker as u8 & 0x1f),
            // uint and int 8/16/32/64, float 32/64.
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 => 3,
            0xca | 0xce | 0xd2 => 5,
            0xcb | 0xcf | 0xd3 => 9,
            // fixext 1/2/4/8/16: a type byte, then the data.
            0xd4 => 3,
            0xd5 => 4,
            0xd6 => 6,
            0xd7 => 10,
            0xd8 => 18,
            _ => 0,
        };
        marker += 1;
    }
    sizes
};

/// An item whose size is not in its marker alone.
enum Item {
    /// A value with no items of its own, `size` bytes long in all.
    Scalar { size: usize },
    /// An array or map: its header's size and how many items follow.
    Container { header: usize, items: u64 },
}

/// The item whose marker is `bytes[at]`, one [`SCALAR_SIZE`] does not size; `None` for a
/// marker no encoder writes or a length field cut short.
fn variable(marker: u8, bytes: &[u8], at: usize) -> Option<Item> {
    // A big-endian length of `width` bytes after the marker.
    let len = |width: usize| -> Option<u64> {
        let field = bytes.get(at + 1..at + 1 + width)?;
        Some(field.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    };
    let sized = |width: usize, extra: usize| -> Option<Item> {
        let data = usize::try_from(len(width)?).ok()?;
        Some(Item::Scalar {
            size: data.checked_add(1 + width + extra)?,
        })
    };
    let container = |header: usize, items: u64| Some(Item::Container { header, items });
    match marker {
        0x80..=0x8f => container(1, 2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => container(1, u64::from(marker & 0x0f)),
        0xdc => container(3, len(2)?),
        0xdd => container(5, len(4)?),
        0xde => container(3, 2 * len(2)?),
        0xdf => container(5, 2 * len(4)?),
        // bin 8/16/32 and str 8/16/32: a length, then the data.
        0xc4 | 0xd9 => sized(1, 0),
        0xc5 | 0xda => sized(2, 0),
        0xc6 | 0xdb => sized(4, 0),
        // ext 8/16/32: a length, a type byte, then the data.
        0xc7 => sized(1, 1),
        0xc8 => sized(2, 1),
        0xc9 => sized(4, 1),
        // 0xc1: never used.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Nested arrays and maps, as deep as the decoder would recurse (a scalar is depth 0).
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            4 => Just(Value::Null),
            4 => any::<bool>().prop_map(Value::from),
            4 => any::<i64>().prop_map(Value::from),
            4 => any::<u64>().prop_map(Value::from),
            4 => any::<f64>().prop_map(Value::from),
            4 => ".{0,40}".prop_map(Value::from),
            // Long enough for the 16- and 32-bit string lengths.
            1 => (0usize..70_000).prop_map(|n| Value::from("x".repeat(n))),
        ];
        leaf.prop_recursive(12, 200, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The scan counts exactly the nesting the value has: accepted at its depth, refused
        /// one below it.
        #[test]
        fn counts_the_nesting_of_any_value(value in values()) {
            let bytes = rmp_serde::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let d = depth(&value);
            prop_assert!(msgpack_within(&bytes, d).is_ok());
            if d > 0 && bytes.len() > d - 1 {
                prop_assert!(msgpack_within(&bytes, d - 1).is_err());
            }
        }

        /// Any bytes: the scan ends, without panicking.
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512), limit in 0usize..200) {
            let _ = msgpack_within(&bytes, limit);
        }
    }

    #[test]
    fn the_repro_is_refused_where_it_passes_the_limit() {
        // {"data": [[[[ … 1,000 … nil ]]]]}: the map is level 1, the 127th array level 128.
        let mut body = vec![0x81, 0xa4, b'd', b'a', b't', b'a'];
        body.extend([0x91u8; 1000]);
        body.push(0xc0);
        assert_eq!(msgpack_within(&body, MAX_DEPTH), Err(6 + 126));
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let at_limit = rmp_serde::to_vec(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(msgpack_within(&at_limit, MAX_DEPTH), Ok(()));
        let deeper = rmp_serde::to_vec(&nested(MAX_DEPTH + 1)).unwrap();
        assert_eq!(msgpack_within(&deeper, MAX_DEPTH), Err(MAX_DEPTH));
    }

    #[test]
    fn wide_and_long_values_are_not_deep() {
        let wide = Value::Array((0..10_000).map(|i| nested(i % 5)).collect());
        let bytes = rmp_serde::to_vec(&wide).unwrap();
        assert_eq!(msgpack_within(&bytes, 5), Ok(()));
        assert!(msgpack_within(&bytes, 4).is_err());
    }

    #[test]
    fn empty_containers_count_as_a_level() {
        // [[[]]]: the decoder enters the innermost array too.
        let bytes = [0x91, 0x91, 0x90];
        assert_eq!(msgpack_within(&bytes, 2), Err(2));
        assert_eq!(msgpack_within(&bytes, 3), Ok(()));
    }

    #[test]
    fn hostile_lengths_end_the_scan() {
        // An array32 claiming four billion items, a str32 claiming more bytes than exist.
        let mut bytes = vec![0xdd, 0xff, 0xff, 0xff, 0xff];
        bytes.extend([0xdb, 0xff, 0xff, 0xff, 0xff]);
        bytes.extend([0x91u8; 300]);
        assert_eq!(msgpack_within(&bytes, MAX_DEPTH), Ok(()));
        // A map16 claiming 65,535 entries holding deep arrays: counted, not trusted.
        let mut map = vec![0xde, 0xff, 0xff, 0xc0];
        map.extend([0x91u8; 300]);
        assert_eq!(msgpack_within(&map, MAX_DEPTH), Err(4 + 126));
    }
}
