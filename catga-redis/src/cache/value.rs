//! The keys and values the cache writes, and the scripts that write them.
//!
//! For a query named `Q` under prefix `p`:
//! - `p:cache:{Q}` holds the query's **generation**, a decimal counter. Invalidating the whole
//!   query is one `INCR` of it; entries written under an older generation are then ignored
//!   (and overwritten or expired), so no command ever enumerates keys.
//! - `p:cache:{Q}:{key}` holds one reply: `v1:{generation}:{expires}:{reply}`, where
//!   `expires` is the reply's end in Unix milliseconds (for the near-cache, which must not
//!   outlive it) and `reply` the encoded reply bytes. Redis expires the key itself (`PX`).
//!
//! The braces around the query name are a Redis Cluster hash tag: a query's generation and
//! its entries hash to one slot, so the lookup (`MGET` of both) and the conditional store
//! (a script reading one, writing the other) each touch a single slot.
//!
//! A generation key that vanished (evicted under an `allkeys-*` policy, deleted by hand) is
//! written again from the server's clock (`TIME`, in microseconds), far above any value a
//! counter started that way reaches, so a generation is never used twice and entries of the
//! vanished one can never be read as current.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a stored value starts with; any other value is not the cache's (or a future
/// format's), and reads as a miss.
const FORMAT: &[u8] = b"v1:";

/// Stores a reply only if the query's generation is still the one the miss saw (or, if there
/// was none, writes one from the server's clock and stores under it). Returns 1 if stored.
///
/// KEYS: generation, entry. ARGV: generation seen (`""`: none), expiry in Unix ms, reply,
/// TTL in ms.
pub(crate) const STORE: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then
  if ARGV[1] ~= '' then return 0 end
  local t = redis.call('TIME')
  g = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[1], g)
elseif g ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], 'v1:' .. g .. ':' .. ARGV[2] .. ':' .. ARGV[3], 'PX', ARGV[4])
return 1
";

/// Moves the query to a new generation and tells every instance: `INCR`, or a generation from
/// the server's clock when there is none (or it is not a number), then `PUBLISH`.
///
/// KEYS: generation. ARGV: channel, message.
pub(crate) const INVALIDATE: &str = r"
local bumped = false
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.pcall('INCR', KEYS[1])
  bumped = type(r) == 'number'
end
if not bumped then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
";

/// Deletes one reply and tells every instance, in one script: one slot (the entry's), so it
/// runs on a Redis Cluster too, where `PUBLISH` reaches the subscribers of every node.
///
/// KEYS: entry. ARGV: channel, message.
pub(crate) const DROP: &str = r"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
";

/// Why a stored value could not be read. Such a value is a miss (the handler runs and its
/// reply overwrites it), logged at `warn`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// It does not start with `v1:`: written by something else, or a newer format.
    #[error("the value does not start with `v1:` (not written by this version of the cache)")]
    Format,
    /// The expiry is not a number of milliseconds followed by `:`.
    #[error("the value's expiry is not a number of milliseconds")]
    Expiry,
}

/// A stored value, read against the query's current generation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read<'v> {
    /// Current: the reply, and how long it has left.
    Current { reply: &'v [u8], left: Duration },
    /// Written under another generation (invalidated since), or expired.
    Stale,
}

/// Reads `value` as a reply of generation `generation`.
pub(crate) fn read<'v>(value: &'v [u8], generation: &[u8]) -> Result<Read<'v>, Malformed> {
    let rest = value.strip_prefix(FORMAT).ok_or(Malformed::Format)?;
    // The generation is compared as bytes: whatever the key holds, an entry is current only
    // if it was written under exactly that.
    let Some(rest) = rest
        .strip_prefix(generation)
        .and_then(|rest| rest.strip_prefix(b":"))
    else {
        return Ok(Read::Stale);
    };
    let colon = rest
        .iter()
        .position(|b| *b == b':')
        .ok_or(Malformed::Expiry)?;
    let expires: u64 = std::str::from_utf8(&rest[..colon])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(Malformed::Expiry)?;
    let left = expires.saturating_sub(unix_millis());
    if left == 0 {
        return Ok(Read::Stale);
    }
    Ok(Read::Current {
        reply: &rest[colon + 1..],
        left: Duration::from_millis(left),
    })
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ttl` in whole milliseconds for `PX`, rounded up, at least 1.
pub(crate) fn px(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(generation: &str, expires: u64, reply: &str) -> Vec<u8> {
        format!("v1:{generation}:{expires}:{reply}").into_bytes()
    }

    #[test]
    fn a_value_of_the_current_generation_is_read_with_its_time_left() {
        let soon = unix_millis() + 60_000;
        let stored = value("17", soon, r#"{"a":1}"#);
        let Ok(Read::Current { reply, left }) = read(&stored, b"17") else {
            panic!("current");
        };
        assert_eq!(reply, br#"{"a":1}"#);
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
        // A reply may itself hold colons.
        let colons = value("17", soon, "a:b:c");
        assert!(matches!(
            read(&colons, b"17"),
            Ok(Read::Current {
                reply: b"a:b:c",
                ..
            })
        ));
    }

    #[test]
    fn another_generation_or_an_expiry_past_is_stale() {
        let soon = unix_millis() + 60_000;
        assert_eq!(read(&value("17", soon, "1"), b"18"), Ok(Read::Stale));
        assert_eq!(read(&value("17", soon, "1"), b"1"), Ok(Read::Stale));
        assert_eq!(read(&value("1", soon, "1"), b"17"), Ok(Read::Stale));
        assert_eq!(read(&value("17", 1, "1"), b"17"), Ok(Read::Stale));
    }

    #[test]
    fn foreign_values_are_malformed_never_a_panic() {
        assert_eq!(read(b"garbage", b"1"), Err(Malformed::Format));
        assert_eq!(read(b"", b"1"), Err(Malformed::Format));
        assert_eq!(read(b"v1:1:", b"1"), Err(Malformed::Expiry));
        assert_eq!(read(b"v1:1:soon:x", b"1"), Err(Malformed::Expiry));
        assert_eq!(
            read(b"v1:1:99999999999999999999999:x", b"1"),
            Err(Malformed::Expiry)
        );
        for bytes in [&b"v1"[..], b"v1:", b"v1::", b"v1:1", b"\xff\xfe"] {
            let _ = read(bytes, b"1");
            let _ = read(bytes, b"");
        }
    }

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(px(Duration::from_nanos(1)), 1);
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_micros(1_500)), 2);
        assert_eq!(px(Duration::from_secs(30)), 30_000);
    }
}
