//! The lease store's Lua scripts, each one command (`EVALSHA`) on the two keys of one lease:
//! `KEYS[1]` its holder key, `KEYS[2]` its token counter (the second only for acquire). Both
//! share the hash tag `{<prefix>:leases}`, so each script runs on one Redis Cluster slot.
//!
//! * The holder key is a hash of exactly two fields, `holder` (the holder's name) and `token`
//!   (the grant's fencing token, decimal digits from `1`), with an expiry (`PEXPIRE`): the
//!   lease is held while the key exists, and Redis's clock ends it.
//! * The token counter is a string of decimal digits without an expiry: the last token
//!   granted for the name (`INCR`), kept across releases and expiries.
//!
//! Anything else (another type, other fields, a token that is no positive number, a key
//! without the expiry the store gives it) was not written by the store: the scripts never
//! overwrite it, and answer `{'malformed', key, reason}` (see `event/outcome.rs` for the shape
//! of every answer). Each checks everything before its first write.

use std::sync::LazyLock;

use redis::Script;

/// What every script starts with: `running(key)` reads the holder key `key` and returns `nil`
/// when no grant runs, `{holder, token, milliseconds left}` when one does, or `false` and the
/// reply to give for a value the store never writes there.
const RUNNING: &str = r"
local function malformed(key, reason) return {'malformed', key, reason} end

local function running(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return nil end
  if kind ~= 'hash' then
    return false, malformed(key, 'it holds a ' .. kind .. ', not a lease')
  end
  local fields = redis.call('HMGET', key, 'holder', 'token')
  local holder, token = fields[1], fields[2]
  if not holder or not token or redis.call('HLEN', key) ~= 2 then
    return false, malformed(key, 'it is not a lease: a lease is a hash of `holder` and `token` only')
  end
  if #token > 19 or not string.match(token, '^[1-9]%d*$') then
    return false, malformed(key, 'its `token` is not a positive whole number')
  end
  local left = redis.call('PTTL', key)
  if left < 0 then
    return false, malformed(key, 'it never expires, and every lease the store grants does')
  end
  return {holder, token, left}
end
";

/// Grants the lease if no grant runs. `ARGV[1]` the holder, `ARGV[2]` the TTL in ms.
///
/// Answers `{'ok', token}` (granted, the token as decimal digits: `INCR` on the counter, read
/// back with `GET` so that no number passes through Lua's doubles), `{'ok'}` (held) or
/// `{'malformed', key, reason}` (a key holds what the store never writes; a counter at
/// `i64::MAX` has no greater token to give).
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RUNNING}{}",
        r"
local grant, bad = running(KEYS[1])
if bad then return bad end
if grant then return {'ok'} end
local kind = redis.call('TYPE', KEYS[2]).ok
if kind ~= 'none' then
  if kind ~= 'string' then
    return malformed(KEYS[2], 'it holds a ' .. kind .. ', not a count of the tokens granted')
  end
  local last = redis.call('GET', KEYS[2])
  if #last > 19 or not string.match(last, '^[1-9]%d*$') then
    return malformed(KEYS[2], 'it is not a count of the tokens granted')
  end
  if #last == 19 and last >= '9223372036854775807' then
    return malformed(KEYS[2], 'the last token there is was granted: no greater one exists')
  end
  if redis.call('PTTL', KEYS[2]) ~= -1 then
    return malformed(KEYS[2], 'it expires, and the store never lets a token count expire')
  end
end
redis.call('INCR', KEYS[2])
local token = redis.call('GET', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'ok', token}
"
    ))
});

/// Extends the grant if it still runs. `ARGV[1]` its token (decimal), `ARGV[2]` its holder,
/// `ARGV[3]` the new TTL in ms. Answers `{'ok', 1}` (renewed), `{'ok', 0}` (lost) or
/// `{'malformed', key, reason}`.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RUNNING}{}",
        r"
local grant, bad = running(KEYS[1])
if bad then return bad end
if not grant or grant[2] ~= ARGV[1] or grant[1] ~= ARGV[2] then return {'ok', 0} end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'ok', 1}
"
    ))
});

/// Ends the grant if it still runs. `ARGV[1]` its token (decimal), `ARGV[2]` its holder.
/// Answers `{'ok', 1}` (released), `{'ok', 0}` (lost already) or `{'malformed', key, reason}`.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RUNNING}{}",
        r"
local grant, bad = running(KEYS[1])
if bad then return bad end
if not grant or grant[2] ~= ARGV[1] or grant[1] ~= ARGV[2] then return {'ok', 0} end
redis.call('DEL', KEYS[1])
return {'ok', 1}
"
    ))
});

/// Who holds the lease. Answers `{'ok'}` (vacant), `{'ok', holder, token, ms left}` or
/// `{'malformed', key, reason}`. Writes nothing.
pub(super) static OBSERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RUNNING}{}",
        r"
local grant, bad = running(KEYS[1])
if bad then return bad end
if not grant then return {'ok'} end
return {'ok', grant[1], grant[2], grant[3]}
"
    ))
});

/// Every script of the store, to load at once.
pub(super) fn all() -> [&'static Script; 4] {
    [&ACQUIRE, &RENEW, &RELEASE, &OBSERVE]
}
