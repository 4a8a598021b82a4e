//! The event store's Lua scripts. Each runs as one `EVALSHA`; Redis runs one script at a time,
//! and a script's writes become visible together when it returns.
//!
//! Each checks everything it depends on before its first write (the types of the keys, the
//! stream's version, the counter and the log's last position), so a script that refuses
//! writes nothing. The first write of an append is the `XADD` of its first event: if the
//! server refuses it (out of memory, an id a foreign writer made impossible), the script stops
//! before anything was written.

use std::sync::LazyLock;

use redis::Script;

/// Appends events to a stream if it is at the expected version, numbering them on, and gives
/// each the next global position.
///
/// `KEYS[1]` the event stream (a Redis Stream, entry ids `version-0`), `KEYS[2]` the global
/// log (a Redis Stream, entry ids `position-0`, fields `s` stream name and `v` version),
/// `KEYS[3]` the position counter (a string holding the last position given).
/// `ARGV[1]` the expected version, `ARGV[2]` the stream's name, then five per event: id, type,
/// payload, correlation id, causation id (ids hyphenated, an absent one empty).
///
/// Answers `{'ok', new version}`, `{'conflict', version}` or `{'malformed', key, reason}`.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(APPEND_LUA));

/// Reads the global log from a position on, each entry with its event.
///
/// `KEYS[1]` the global log. `ARGV[1]` the first id to read (`-`, or `(position-0`, after
/// it), `ARGV[2]` how many at most, `ARGV[3]` the key of an event stream less its name.
///
/// Answers `{'ok', position id, stream name, event entry, …}` (an entry as `XRANGE` gives it)
/// or `{'malformed', key, reason}`.
pub(super) static READ_ALL: LazyLock<Script> = LazyLock::new(|| Script::new(READ_ALL_LUA));

const APPEND_LUA: &str = r#"
local function malformed(key, reason) return {'malformed', key, reason} end
local function kind(key) return redis.call('TYPE', key).ok end

local k = kind(KEYS[1])
if k ~= 'stream' and k ~= 'none' then
  return malformed(KEYS[1], 'it holds a ' .. k .. ', not a stream of events')
end
local actual = redis.call('XLEN', KEYS[1])
if actual ~= tonumber(ARGV[1]) then return {'conflict', actual} end
local n = (#ARGV - 2) / 5
if n == 0 then return {'ok', actual} end

k = kind(KEYS[3])
if k ~= 'string' and k ~= 'none' then
  return malformed(KEYS[3], 'it holds a ' .. k .. ', not the last position')
end
local base = 0
local counter = redis.call('GET', KEYS[3])
if counter then
  -- Digits as `INCRBY` reads them (no leading zero), few enough for Lua's numbers.
  if not (counter == '0' or string.match(counter, '^[1-9]%d*$')) or #counter > 15 then
    return malformed(KEYS[3], 'it holds no position')
  end
  base = tonumber(counter)
end
k = kind(KEYS[2])
if k ~= 'stream' and k ~= 'none' then
  return malformed(KEYS[2], 'it holds a ' .. k .. ', not the global log')
end
if k == 'stream' then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  local last = nil
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  local head = last and tonumber(string.match(last, '^(%d+)%-'))
  if head == nil or head > base then
    return malformed(KEYS[2], 'its last position ' .. tostring(last) ..
      ' is past the counter at ' .. base)
  end
end

local now = redis.call('TIME')
local at = now[1] .. string.format('%06d', tonumber(now[2]))
for i = 1, n do
  local a = 2 + (i - 1) * 5
  redis.call('XADD', KEYS[1], string.format('%d-0', actual + i),
    'id', ARGV[a + 1], 'type', ARGV[a + 2], 'payload', ARGV[a + 3],
    'correlation', ARGV[a + 4], 'causation', ARGV[a + 5], 'at', at)
end
redis.call('INCRBY', KEYS[3], n)
for i = 1, n do
  redis.call('XADD', KEYS[2], string.format('%d-0', base + i),
    's', ARGV[2], 'v', string.format('%d', actual + i))
end
return {'ok', actual + n}
"#;

const READ_ALL_LUA: &str = r#"
local function malformed(key, reason) return {'malformed', key, reason} end

local k = redis.call('TYPE', KEYS[1]).ok
if k == 'none' then return {'ok'} end
if k ~= 'stream' then
  return malformed(KEYS[1], 'it holds a ' .. k .. ', not the global log')
end
local out = {'ok'}
-- `COUNT 0` answers nil rather than an empty list.
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2]) or {}
for _, entry in ipairs(entries) do
  local f = entry[2]
  if #f ~= 4 or f[1] ~= 's' or f[3] ~= 'v' or not string.match(f[4], '^%d+$') then
    return malformed(KEYS[1], 'its entry ' .. entry[1] .. ' names no stream and version')
  end
  local key = ARGV[3] .. f[2]
  k = redis.call('TYPE', key).ok
  if k ~= 'stream' then
    return malformed(key, 'it holds a ' .. k .. ', not the stream the log lists at ' .. entry[1])
  end
  local event = redis.call('XRANGE', key, f[4] .. '-0', f[4] .. '-0')[1]
  if not event then
    return malformed(key, 'it holds no event ' .. f[4] .. ', which the log lists at ' .. entry[1])
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = f[2]
  out[#out + 1] = event
end
return out
"#;
