//! The value of a lease's entry: a small JSON object, read strictly.
//!
//! ```text
//! {"holder":"node-a","token":7,"ttl_ms":5000,"v":1}   held by node-a with token 7, for 5 s
//!                                                      from the entry's server timestamp
//! {"holder":"","token":7,"ttl_ms":0,"v":1}             released: vacant, the counter kept
//! {"holder":"node-a","token":0,"ttl_ms":5000,"v":1}    a first grant: its token is the
//!                                                      entry's own revision
//! ```
//!
//! Every field is required and no other is accepted; `v` is 1. An empty `holder` means
//! vacant, with `ttl_ms` 0 and a token of at least 1. A token of 0 stands for the revision of
//! the entry that holds it: a grant on a key with no value to continue from cannot know its
//! token before the server stores it (see `NatsLeaseStore`'s docs, "Fencing tokens").

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::error::MalformedLeaseValue;

/// The version of the format this store writes and reads.
const VERSION: u32 = 1;

/// A lease's value as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Released: nobody holds it, and the last grant's token was `token`.
    Vacant {
        /// The last grant's token (at least 1).
        token: u64,
    },
    /// Granted to `holder`, for `ttl` from the entry's server timestamp.
    Held {
        /// Who holds it (not empty).
        holder: String,
        /// The grant's token; 0 for the revision of the entry that holds this value.
        token: u64,
        /// How long the grant runs from the entry's timestamp, in whole milliseconds.
        ttl: Duration,
    },
}

/// The fields on the wire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    holder: String,
    token: u64,
    ttl_ms: u64,
}

impl Value {
    /// The JSON this value is stored as.
    pub(crate) fn encode(&self) -> Bytes {
        let (holder, token, ttl_ms) = match self {
            Value::Vacant { token } => ("", *token, 0),
            Value::Held { holder, token, ttl } => (holder.as_str(), *token, millis(*ttl)),
        };
        // `Value`'s `Display` writes JSON and cannot fail.
        let json = serde_json::json!({
            "v": VERSION,
            "holder": holder,
            "token": token,
            "ttl_ms": ttl_ms,
        });
        Bytes::from(json.to_string())
    }

    /// The value `bytes` hold.
    ///
    /// # Errors
    /// [`MalformedLeaseValue`] for anything this store does not write.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Value, MalformedLeaseValue> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(MalformedLeaseValue::Json)?;
        if wire.v != VERSION {
            return Err(MalformedLeaseValue::Version { found: wire.v });
        }
        if wire.holder.is_empty() {
            if wire.ttl_ms != 0 {
                return Err(MalformedLeaseValue::Inconsistent(
                    "a vacant lease (empty holder) with a ttl",
                ));
            }
            if wire.token == 0 {
                return Err(MalformedLeaseValue::Inconsistent(
                    "a vacant lease (empty holder) without a token",
                ));
            }
            return Ok(Value::Vacant { token: wire.token });
        }
        Ok(Value::Held {
            holder: wire.holder,
            token: wire.token,
            ttl: Duration::from_millis(wire.ttl_ms),
        })
    }
}

/// `ttl` in whole milliseconds, rounded up (the store never ends a grant before its holder
/// does), at most `u64::MAX`.
pub(crate) fn millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_forms_read_as_documented() {
        let held = br#"{"holder":"node-a","token":7,"ttl_ms":5000,"v":1}"#;
        assert_eq!(
            Value::decode(held).unwrap(),
            Value::Held {
                holder: "node-a".into(),
                token: 7,
                ttl: Duration::from_secs(5)
            }
        );
        let vacant = br#"{"v":1,"holder":"","token":7,"ttl_ms":0}"#;
        assert_eq!(Value::decode(vacant).unwrap(), Value::Vacant { token: 7 });
        let first = br#"{"holder":"node-a","token":0,"ttl_ms":5000,"v":1}"#;
        assert!(matches!(
            Value::decode(first).unwrap(),
            Value::Held { token: 0, .. }
        ));
    }

    #[test]
    fn what_this_store_does_not_write_is_refused() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "json"),
            (b"\xff\x00garbage", "json"),
            (b"null", "json"),
            (br#"{"v":1,"holder":"a","token":1}"#, "json"),
            (
                br#"{"v":1,"holder":"a","token":1,"ttl_ms":5,"x":0}"#,
                "json",
            ),
            (br#"{"v":1,"holder":"a","token":-1,"ttl_ms":5}"#, "json"),
            (br#"{"v":1,"holder":7,"token":1,"ttl_ms":5}"#, "json"),
            (br#"{"v":2,"holder":"a","token":1,"ttl_ms":5}"#, "version"),
            (
                br#"{"v":1,"holder":"","token":1,"ttl_ms":5}"#,
                "inconsistent",
            ),
            (
                br#"{"v":1,"holder":"","token":0,"ttl_ms":0}"#,
                "inconsistent",
            ),
        ];
        for (bytes, expected) in cases {
            let error = Value::decode(bytes).unwrap_err();
            let kind = match error {
                MalformedLeaseValue::Json(_) => "json",
                MalformedLeaseValue::Version { .. } => "version",
                MalformedLeaseValue::Inconsistent(_) => "inconsistent",
            };
            assert_eq!(kind, expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_ttl_is_rounded_up_to_the_millisecond() {
        assert_eq!(millis(Duration::from_millis(300)), 300);
        assert_eq!(millis(Duration::from_micros(300_001)), 301);
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    proptest! {
        #[test]
        fn every_value_reads_back(holder in ".+", token in 0u64.., ttl_ms in 0u64.., vacant: bool) {
            let value = if vacant {
                Value::Vacant { token: token.max(1) }
            } else {
                Value::Held { holder, token, ttl: Duration::from_millis(ttl_ms) }
            };
            prop_assert_eq!(Value::decode(&value.encode()).unwrap(), value);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Value::decode(&bytes);
        }
    }
}
