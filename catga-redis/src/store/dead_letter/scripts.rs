//! The dead-letter store's Lua scripts. Every key they touch starts with the store's hash tag
//! (`{<prefix>:dead_letters}`), so all are in one Cluster slot: a record's key is declared
//! (`KEYS`) where the caller knows it, and built from the tag (`ARGV`) where the script finds
//! the id in an index (listing, purging), which a Cluster node allows for keys of its own slot.

use std::sync::LazyLock;

use redis::Script;

/// Helpers every script starts with: `member(message, id)`, the `by_message` index member of
/// a record (the message escaped as the Rust side's `escape` does, `:`, the id), and
/// `records(prefix, ids)`, each id with its record's fields (`HGETALL`; none if it is gone).
const COMMON: &str = r"
local function member(message, id)
  local escaped = string.gsub(message, '[%%:{}%c ]', function(c)
    return string.format('%%%02X', string.byte(c))
  end)
  return escaped .. ':' .. id
end
local function records(prefix, ids)
  local out = {}
  for i, id in ipairs(ids) do out[i] = {id, redis.call('HGETALL', prefix .. id)} end
  return out
end
";

/// Whether a record's fields are whole (the rules of `fields::decode`), so that taking it
/// away cannot lose a record nobody can read. Text must be UTF-8: `utf8` checks it.
const WHOLE: &str = r"
local function utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, low, high = 1, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
    else return false end
    for j = i + 1, i + len - 1 do
      local d = string.byte(s, j)
      if not d then return false end
      if j == i + 1 then
        if d < low or d > high then return false end
      elseif d < 0x80 or d > 0xBF then return false end
    end
    i = i + len
  end
  return true
end
local UUID = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local STAGES = {handler = true, delivery = true, publish = true, compensation = true}
local function text(s) return s ~= nil and utf8(s) end
local function whole(r, id)
  if r['id'] ~= id then return false end
  if not (text(r['message']) and text(r['code']) and text(r['error'])) then return false end
  if r['handler'] and not utf8(r['handler']) then return false end
  if r['source'] and not utf8(r['source']) then return false end
  local attempts = r['attempts']
  if not attempts or not string.match(attempts, '^%d+$') or #attempts > 10
    or tonumber(attempts) > 4294967295 then return false end
  for _, name in ipairs({'message_id', 'correlation_id'}) do
    if not r[name] or not string.match(r[name], UUID) then return false end
  end
  if r['causation_id'] and not string.match(r['causation_id'], UUID) then return false end
  local at = r['failed_at']
  if not at or not string.match(at, '^%-?%d+$') or #string.gsub(at, '%-', '') > 18 then
    return false
  end
  if not STAGES[r['stage'] or ''] then return false end
  local n = r['headers']
  if not n or not string.match(n, '^%d+$') or #n > 6 then return false end
  for i = 0, tonumber(n) - 1 do
    if not (text(r['header.' .. i .. '.name']) and text(r['header.' .. i .. '.value'])) then
      return false
    end
  end
  return true
end
";

/// `KEYS`: the record, `ids`, `by_time`, `by_message`; `ARGV`: the id, `failed_at` (µs), the
/// `by_message` member, then the record's fields and values. Replaces a record with the same
/// id (and its old `by_message` member). A record key of another type fails with `WRONGTYPE`
/// before anything is written.
pub(super) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local old = redis.call('HGET', KEYS[1], 'message')
if old then redis.call('ZREM', KEYS[4], member(old, ARGV[1])) end
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 100 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 99, #ARGV)))
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
return 1
"
    ))
});

/// `KEYS`: `ids`, `by_time`, `by_message`, then one record key per record. `ARGV`, per record
/// in the order of its key: how many arguments follow for it, then its id, `failed_at` (µs),
/// its `by_message` member and its field-value pairs. Each record is written as [`PUT`] writes
/// one, except that the index entries are added with one `ZADD` per index for the batch (a
/// record replaced later in the same batch leaves no stale `by_message` entry): the whole
/// batch is one script, so the server runs it at once. Every record key is read before any is
/// written, so a key of another type (`WRONGTYPE`) fails the batch with nothing written.
pub(super) static PUT_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local olds = {}
for i = 4, #KEYS do olds[i] = redis.call('HGET', KEYS[i], 'message') end
local at = 1
local times, entries, written = {}, {}, {}
for i = 4, #KEYS do
  local n = tonumber(ARGV[at])
  local id, score, entry = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local last = at + n
  local old = olds[i]
  if written[KEYS[i]] then old = redis.call('HGET', KEYS[i], 'message') end
  written[KEYS[i]] = true
  if old then
    local stale = member(old, id)
    entries[stale] = nil
    redis.call('ZREM', KEYS[3], stale)
  end
  redis.call('DEL', KEYS[i])
  for j = at + 4, last, 100 do
    redis.call('HSET', KEYS[i], unpack(ARGV, j, math.min(j + 99, last)))
  end
  times[id] = score
  entries[entry] = true
  at = last + 1
end
local function flush(key, members)
  local args = {}
  for m, score in pairs(members) do
    args[#args + 1] = score == true and 0 or score
    args[#args + 1] = m
    if #args >= 200 then redis.call('ZADD', key, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('ZADD', key, unpack(args)) end
end
local ids = {}
for id in pairs(times) do ids[id] = 0 end
flush(KEYS[1], ids)
flush(KEYS[2], times)
flush(KEYS[3], entries)
return #KEYS - 3
"
    ))
});

/// `KEYS`: the record, `ids`, `by_time`, `by_message`; `ARGV[1]` the id. Returns nil if there
/// is no record, `{1, fields}` after removing it and its index entries, `{0, fields}` for a
/// record that is not whole (left where it is).
pub(super) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{WHOLE}{}",
        r"
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return false end
local record = {}
for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
if not whole(record, ARGV[1]) then return {0, flat} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], member(record['message'], ARGV[1]))
return {1, flat}
"
    ))
});

/// `KEYS[1]` `ids`; `ARGV[1]` the record key prefix, `ARGV[2]` the last rank (limit - 1).
/// The oldest records by id: `{id, fields}` each.
pub(super) static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
return records(ARGV[1], redis.call('ZRANGE', KEYS[1], 0, ARGV[2]))
"
    ))
});

/// `KEYS[1]` `by_message`; `ARGV`: the record key prefix, the lexical range of the message's
/// members (`[<escaped>:` to `(<escaped>;`), the limit.
pub(super) static BY_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
local ids = {}
for i, m in ipairs(members) do ids[i] = string.sub(m, -36) end
return records(ARGV[1], ids)
"
    ))
});

/// `KEYS[1]` `by_time`; `ARGV`: the record key prefix, the score range (`from`, `(until`),
/// the limit. In order of `failed_at`, then id.
pub(super) static FAILED_BETWEEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
return records(ARGV[1],
  redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4]))
"
    ))
});

/// `KEYS`: `ids`, `by_time`, `by_message`; `ARGV`: the record key prefix, the age (µs), the
/// most records to delete. Deletes records that failed before the server's time minus the
/// age, with their index entries; returns how many.
pub(super) static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{COMMON}{}",
        r"
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000000 + tonumber(now[2]) - tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', cutoff),
  'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local message = redis.call('HGET', key, 'message')
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if message then redis.call('ZREM', KEYS[3], member(message, id)) end
end
return #ids
"
    ))
});

/// Every script of the store, for [`load_scripts`](super::RedisDeadLetterStore::load_scripts).
pub(super) fn all() -> [&'static Script; 7] {
    [
        &PUT,
        &PUT_MANY,
        &TAKE,
        &LIST,
        &BY_MESSAGE,
        &FAILED_BETWEEN,
        &PURGE,
    ]
}
