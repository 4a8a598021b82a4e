//! The schedule store's Lua scripts, one per operation, each one command (`EVALSHA`). Every
//! key they touch starts with the store's hash tag (`{<prefix>:schedule}`), so each runs on one
//! Redis Cluster slot: the keys the caller knows are declared (`KEYS`); a message's key is built
//! from the prefix (`ARGV`) where the script finds its id in the due index, which a Cluster
//! node allows for keys of its own slot.
//!
//! * `due`: a sorted set, each kept message's id (hyphenated, lower case) scored by its due
//!   time in whole microseconds since 1970 (exact: within ±2^53).
//! * `claims`: a sorted set, each claimed message's id scored by the end of its claim in
//!   milliseconds since 1970, by the server's clock.
//! * `fence`: a string, the highest fencing token given (decimal digits).
//! * `msg:<id>`: a hash, the message (see `fields.rs`).
//!
//! "Now" is the server's clock (`TIME`; Redis 7 replicates a script by its effects, so a
//! script may read the clock and then write). A key holding another type, or a fence that is
//! no whole number, was not written by the store: the scripts answer
//! `{'malformed', key, reason}` and write nothing (see `event/outcome.rs` for the answers'
//! shape); each checks every key it writes before its first write. A stale token is answered
//! `{'stale', floor}`, with nothing written either.

use std::sync::LazyLock;

use redis::Script;

/// What every script starts with: `malformed`, `foreign(key, type, what)` (the reply for a key
/// of another type than `type`, or nil), `now()` (the server's clock in µs and in ms) and
/// `held(claims, id, ms)` (whether a claim on `id` runs past `ms`).
const COMMON: &str = r"
local function malformed(key, reason) return {'malformed', key, reason} end

local function foreign(key, want, what)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'none' and kind ~= want then
    return malformed(key, 'it holds a ' .. kind .. ', not ' .. what)
  end
  return nil
end

local function now()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return us, math.floor(us / 1000)
end

local function held(claims, id, ms)
  local ends = redis.call('ZSCORE', claims, id)
  return ends ~= false and ends ~= nil and tonumber(ends) > ms
end
";

/// The fence: `fenced(key, token)` is nil when the decimal `token` is admitted (not below the
/// floor kept at `key`), else the reply to give: `{'stale', floor}` or malformed. Tokens are
/// compared as digit strings (length, then digit by digit): a `u64` is beyond Lua's doubles.
const FENCE: &str = r"
local function token(s)
  return #s <= 20 and (s == '0' or string.match(s, '^[1-9]%d*$') ~= nil)
end

local function below(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end

local function fenced(key, presented)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return nil end
  if kind ~= 'string' then
    return malformed(key, 'it holds a ' .. kind .. ', not a fencing token')
  end
  local floor = redis.call('GET', key)
  if not token(floor) then
    return malformed(key, 'it is not a fencing token (a whole number, decimal)')
  end
  if below(presented, floor) then return {'stale', floor} end
  return nil
end
";

/// `KEYS`: the message, `due`, `claims`; `ARGV`: the id, the due time (µs), then the hash's
/// field-value pairs. Answers `{'ok', 1}` (kept), `{'ok', 0}` (the id is kept already, nothing
/// changed) or malformed. A new message starts unclaimed.
pub(super) static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'hash' then return {'ok', 0} end
if kind ~= 'none' then
  return malformed(KEYS[1], 'it holds a ' .. kind .. ', not a scheduled message')
end
local bad = foreign(KEYS[2], 'zset', 'the due index') or foreign(KEYS[3], 'zset', 'the claims')
if bad then return bad end
for i = 3, #ARGV, 100 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 99, #ARGV)))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok', 1}
"
    ))
});

/// `KEYS`: the message, `due`, `claims`; `ARGV[1]` the id. Removes the message whatever its
/// key holds, with its index entry and claim. Answers `{'ok', 1}` (there was one), `{'ok', 0}`
/// or malformed (an index of another type: nothing removed).
pub(super) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local bad = foreign(KEYS[2], 'zset', 'the due index') or foreign(KEYS[3], 'zset', 'the claims')
if bad then return bad end
local gone = redis.call('DEL', KEYS[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if gone > 0 then return {'ok', 1} end
return {'ok', 0}
"
    ))
});

/// `KEYS`: `fence`, `due`, `claims`; `ARGV`: the token (decimal), the most messages to take,
/// the claim's lease (ms), the message key prefix (`{…}:msg:`). Admits and raises the fence,
/// then walks `due` up to now in order (due time, then id), a page at a time, skipping ids a
/// claim holds, and claims up to the limit until now + lease. Answers `{'ok', {id, score,
/// type, fields}, …}`: each taken id, its score as the server writes it, its key's type and,
/// for a hash, `HGETALL` (else an empty array); or `{'stale', floor}`, or malformed.
pub(super) static CLAIM_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{FENCE}{}",
        r"
local bad = foreign(KEYS[2], 'zset', 'the due index') or foreign(KEYS[3], 'zset', 'the claims')
  or fenced(KEYS[1], ARGV[1])
if bad then return bad end
redis.call('SET', KEYS[1], ARGV[1])
local limit = tonumber(ARGV[2])
local us, ms = now()
local max = string.format('%.0f', us)
local ends = string.format('%.0f', ms + tonumber(ARGV[3]))
local taken, offset = {}, 0
while #taken < limit do
  local page = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', max, 'WITHSCORES', 'LIMIT', offset, 128)
  if #page == 0 then break end
  for i = 1, #page, 2 do
    if not held(KEYS[3], page[i], ms) then
      taken[#taken + 1] = {page[i], page[i + 1]}
      if #taken >= limit then break end
    end
  end
  offset = offset + 128
end
local out = {'ok'}
for _, t in ipairs(taken) do
  redis.call('ZADD', KEYS[3], ends, t[1])
  local key = ARGV[4] .. t[1]
  local kind = redis.call('TYPE', key).ok
  local fields = {}
  if kind == 'hash' then fields = redis.call('HGETALL', key) end
  out[#out + 1] = {t[1], t[2], kind, fields}
end
return out
"
    ))
});

/// `KEYS`: `fence`, `due`, `claims`; `ARGV`: the token (decimal), the message key prefix, then
/// the ids. Admits and raises the fence (also for no ids), then removes each message with its
/// index entry and claim. Answers `{'ok'}`, `{'stale', floor}` or malformed.
pub(super) static FIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{FENCE}{}",
        r"
local bad = foreign(KEYS[2], 'zset', 'the due index') or foreign(KEYS[3], 'zset', 'the claims')
  or fenced(KEYS[1], ARGV[1])
if bad then return bad end
redis.call('SET', KEYS[1], ARGV[1])
for i = 3, #ARGV do
  redis.call('DEL', ARGV[2] .. ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return {'ok'}
"
    ))
});

/// `KEYS`: `due`, `claims`. The score of the first id in `due` (by due time, then id) that no
/// claim holds: `{'ok', score}`, `{'ok'}` when there is none, or malformed. Each id skipped is
/// one a claim holds, so the walk reads at most one page more than `claims` has members.
pub(super) static NEXT_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local bad = foreign(KEYS[1], 'zset', 'the due index') or foreign(KEYS[2], 'zset', 'the claims')
if bad then return bad end
local _, ms = now()
local offset = 0
while true do
  local page = redis.call('ZRANGE', KEYS[1], offset, offset + 127, 'WITHSCORES')
  if #page == 0 then return {'ok'} end
  for i = 1, #page, 2 do
    if not held(KEYS[2], page[i], ms) then return {'ok', page[i + 1]} end
  end
  offset = offset + 128
end
"
    ))
});

/// Every script of the store, to load at once.
pub(super) fn all() -> [&'static Script; 5] {
    [&SCHEDULE, &CANCEL, &CLAIM_DUE, &FIRED, &NEXT_DUE]
}
