//! The idempotency store's Lua scripts, each one command (`EVALSHA`) on one key.
//!
//! A key's value is one of:
//! * `H`: held by a dispatch until the key expires (its lease, `PX`);
//! * `W`: held, and a dispatch elsewhere waits for it: completing or releasing it publishes
//!   the key on the store's channel;
//! * `D<reply>`: completed, the reply's bytes after the `D`, until the key expires (its TTL).
//!
//! Anything else (another type, another value) was not written by the store: the scripts
//! never overwrite it, and say so (the caller reports it as malformed; a value of another type
//! makes the server answer `WRONGTYPE`).

use std::sync::LazyLock;

use redis::Script;

/// `KEYS[1]` the key, `ARGV[1]` the lease in ms. Returns the value as it is (for the caller
/// to read: a reply, a holder, or something malformed), or `0` after taking the key.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], 'H', 'PX', ARGV[1])
return 0
",
    )
});

/// What every other script starts with: `state(key)` is `'H'`, `'W'` or `'D'` for a value the
/// store wrote, `nil` when there is none, `'?'` for anything else (a value of another type
/// fails with `WRONGTYPE` first).
const STATE: &str = r"
local function state(key)
  local tag = redis.call('GETRANGE', key, 0, 0)
  if tag == '' then
    if redis.call('EXISTS', key) == 0 then return nil end
    return '?'
  end
  if tag == 'D' then return 'D' end
  if (tag == 'H' or tag == 'W') and redis.call('STRLEN', key) == 1 then return tag end
  return '?'
end
";

/// `KEYS[1]` the key, `ARGV[1]` the reply, `ARGV[2]` the TTL in ms, `ARGV[3]` the channel.
/// Returns `1` once written, `-1` for a value the store did not write (left as it is).
pub(super) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{STATE}{}",
        r"
local was = state(KEYS[1])
if was == '?' then return -1 end
redis.call('SET', KEYS[1], 'D' .. ARGV[1], 'PX', ARGV[2])
if was == 'W' then redis.call('PUBLISH', ARGV[3], KEYS[1]) end
return 1
"
    ))
});

/// `KEYS[1]` the key, `ARGV[1]` the channel. Removes a claim (never a reply): returns `1` if
/// it did, `0` if there was none, `-1` for a value the store did not write.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{STATE}{}",
        r"
local was = state(KEYS[1])
if was == '?' then return -1 end
if was == 'H' or was == 'W' then
  redis.call('DEL', KEYS[1])
  if was == 'W' then redis.call('PUBLISH', ARGV[1], KEYS[1]) end
  return 1
end
return 0
"
    ))
});

/// `KEYS[1]` the key. For a waiter: marks a held key as waited for (`W`, keeping its expiry)
/// and returns how long it is still held, ms; `-1` if it is not held, `-2` for a value the
/// store did not write, `-3` if it is held without an expiry (written by hand).
pub(super) static LOOK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{STATE}{}",
        r"
local was = state(KEYS[1])
if was == '?' then return -2 end
if was ~= 'H' and was ~= 'W' then return -1 end
if was == 'H' then redis.call('SET', KEYS[1], 'W', 'KEEPTTL') end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return -3 end
return ttl
"
    ))
});

/// Every script of the store, for [`load_scripts`](super::RedisIdempotencyStore::load_scripts).
pub(super) fn all() -> [&'static Script; 4] {
    [&CLAIM, &COMPLETE, &RELEASE, &LOOK]
}
