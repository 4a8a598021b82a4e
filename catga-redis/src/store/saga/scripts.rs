//! The saga store's Lua scripts. Each runs as one `EVALSHA`; Redis runs one script at a time,
//! and a script's writes become visible together when it returns. Each checks everything it
//! depends on before its first write, so a script that refuses writes nothing.

use std::sync::LazyLock;

use redis::Script;

/// Saves an instance if it is at the expected version, stamps it with the server's time and
/// keeps its saga's unfinished index in step.
///
/// `KEYS[1]` the instance (a hash), `KEYS[2]` the unfinished index of the record's saga (a
/// sorted set of ids by time of the last save, µs). `ARGV[1]` the expected version, `ARGV[2]`
/// the id, `ARGV[3]` the saga's name, `ARGV[4]` the status, `ARGV[5]` the data, `ARGV[6]` the
/// state, `ARGV[7]` `1` if the status is unfinished, `ARGV[8]` the key of an index less the
/// saga's name (to leave the index of a saga the instance was saved under before).
///
/// Answers `{'ok', new version}`, `{'conflict', version}` or `{'malformed', key, reason}`.
pub(super) static SAVE: LazyLock<Script> = LazyLock::new(|| Script::new(SAVE_LUA));

/// The unfinished instances of a saga saved before a time, longest untouched first.
///
/// `KEYS[1]` the saga's unfinished index. `ARGV[1]` the highest time (`+inf`, or `(µs`,
/// exclusive), `ARGV[2]` how many at most, `ARGV[3]` the key of an instance less its id.
///
/// Answers `{'ok', id, saga, status, data, state, version, updated_at, …}` (a field the hash
/// lacks is nil) or `{'malformed', key, reason}`.
pub(super) static UNFINISHED: LazyLock<Script> = LazyLock::new(|| Script::new(UNFINISHED_LUA));

/// Deletes an instance and its entry in its saga's unfinished index.
///
/// `KEYS[1]` the instance. `ARGV[1]` the id, `ARGV[2]` the key of an index less the saga's
/// name. Answers `{'ok', 1}` (deleted), `{'ok', 0}` (not stored) or `{'malformed', key,
/// reason}`.
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_LUA));

const SAVE_LUA: &str = r#"
local function malformed(key, reason) return {'malformed', key, reason} end
local function kind(key) return redis.call('TYPE', key).ok end

local k = kind(KEYS[1])
local actual, previous = 0, nil
if k == 'hash' then
  local stored = redis.call('HMGET', KEYS[1], 'version', 'saga')
  if not stored[1] or not string.match(stored[1], '^%d+$') or #stored[1] > 15 then
    return malformed(KEYS[1], 'it holds no version')
  end
  if not stored[2] then return malformed(KEYS[1], 'it names no saga') end
  actual, previous = tonumber(stored[1]), stored[2]
elseif k ~= 'none' then
  return malformed(KEYS[1], 'it holds a ' .. k .. ', not a saga instance')
end
if actual ~= tonumber(ARGV[1]) then return {'conflict', actual} end

k = kind(KEYS[2])
if k ~= 'zset' and k ~= 'none' then
  return malformed(KEYS[2], 'it holds a ' .. k .. ', not an index of unfinished instances')
end
local left = nil
if previous and previous ~= ARGV[3] then
  left = ARGV[8] .. previous
  k = kind(left)
  if k ~= 'zset' and k ~= 'none' then
    return malformed(left, 'it holds a ' .. k .. ', not an index of unfinished instances')
  end
end

local now = redis.call('TIME')
local at = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('HSET', KEYS[1], 'saga', ARGV[3], 'status', ARGV[4], 'data', ARGV[5],
  'state', ARGV[6], 'version', string.format('%d', actual + 1), 'updated_at', at)
if left then redis.call('ZREM', left, ARGV[2]) end
if ARGV[7] == '1' then
  redis.call('ZADD', KEYS[2], at, ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return {'ok', actual + 1}
"#;

const UNFINISHED_LUA: &str = r#"
local k = redis.call('TYPE', KEYS[1]).ok
if k == 'none' then return {'ok'} end
if k ~= 'zset' then
  return {'malformed', KEYS[1], 'it holds a ' .. k .. ', not an index of unfinished instances'}
end
local out = {'ok'}
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  k = redis.call('TYPE', key).ok
  if k ~= 'hash' then
    return {'malformed', KEYS[1], 'it lists ' .. id .. ', whose key holds a ' .. k ..
      ', not a saga instance'}
  end
  local f = redis.call('HMGET', key, 'saga', 'status', 'data', 'state', 'version', 'updated_at')
  out[#out + 1] = id
  for i = 1, 6 do out[#out + 1] = f[i] end
end
return out
"#;

const DELETE_LUA: &str = r#"
local k = redis.call('TYPE', KEYS[1]).ok
if k == 'none' then return {'ok', 0} end
if k ~= 'hash' then
  return {'malformed', KEYS[1], 'it holds a ' .. k .. ', not a saga instance'}
end
local saga = redis.call('HGET', KEYS[1], 'saga')
local index = nil
if saga then
  index = ARGV[2] .. saga
  k = redis.call('TYPE', index).ok
  if k ~= 'zset' and k ~= 'none' then
    return {'malformed', index, 'it holds a ' .. k .. ', not an index of unfinished instances'}
  end
end
redis.call('DEL', KEYS[1])
if index then redis.call('ZREM', index, ARGV[1]) end
return {'ok', 1}
"#;
