-- The commit of a unit of work: the handler's writes, its events and its inbox record.
--
-- KEYS: [inbox key], [idempotency key], outbox stream, ordering-key lists…, the writes'
--       declared keys…
-- ARGV: 1 has inbox ('1'/'0'), 2 inbox value, 3 inbox ttl ms, 4 notify channel ('' none),
--       5 notify payload, 6 index of the first declared key in KEYS, 7 event count,
--       8 write count, 9 has an idempotent reply ('1'/'0'), 10 its record ('D' .. reply),
--       11 its ttl ms, 12 the idempotency store's wake-up channel,
--       then per write: check code, arity, arguments…,
--       then per event: index of its list in KEYS, field count, fields and values…
--
-- Returns {'ok', reply recorded ('1'/'0'), entry id…} | {'duplicate', stored reply}
--       | {'refused', write #, reason} | {'partial', write #, reason}
--
-- Redis runs a script atomically (no other client's command in between) but does not undo
-- its writes when a command fails. So nothing is written until every write that can be
-- checked was, and a unit with a write that cannot be checked saves its declared keys
-- (DUMP) first and restores them if a write fails.

local has_inbox = ARGV[1] == '1'
local has_reply = ARGV[9] == '1'
local s = 1 + (has_inbox and 1 or 0) + (has_reply and 1 or 0)
local first_key = tonumber(ARGV[6])
local events = tonumber(ARGV[7])

if has_inbox then
  local prior = redis.call('GET', KEYS[1])
  if prior then
    return {'duplicate', prior}
  end
end

-- The idempotency key as the idempotency store's scripts read it ('H' held, 'W' held and
-- waited for, 'D' done, nil absent, '?' a value the store did not write: left alone, and
-- left to the behaviour to report). Read before anything is written: GETRANGE on a key of
-- another type would fail the script halfway.
local reply_key, reply_state = nil, nil
if has_reply then
  reply_key = KEYS[s - 1]
  local t = redis.call('TYPE', reply_key)['ok']
  if t == 'string' then
    local tag = redis.call('GETRANGE', reply_key, 0, 0)
    if tag == 'D' then
      reply_state = 'D'
    elseif (tag == 'H' or tag == 'W') and redis.call('STRLEN', reply_key) == 1 then
      reply_state = tag
    else
      reply_state = '?'
    end
  elseif t ~= 'none' then
    reply_state = '?'
  end
end

-- The writes, as queued.
local p = 13
local writes = {}
for w = 1, tonumber(ARGV[8]) do
  local code, n = ARGV[p], tonumber(ARGV[p + 1])
  local args = {}
  for j = 1, n do
    args[j] = ARGV[p + 1 + j]
  end
  p = p + 2 + n
  writes[w] = {code, args}
end

-- The outbox's own keys must hold what it writes there.
if events > 0 then
  for i = s, first_key - 1 do
    local t = redis.call('TYPE', KEYS[i])['ok']
    local want = (i == s) and 'stream' or 'list'
    if t ~= 'none' and t ~= want then
      return {'refused', 0, 'WRONGTYPE the outbox key ' .. KEYS[i] .. ' holds a ' .. t}
    end
  end
end

-- An integer as INCRBY reads it: a number, 'nan' (not an integer), or false (too large to
-- tell here whether an increment overflows).
local function integer(text)
  if text == '0' then
    return 0
  end
  if not string.match(text, '^%-?[1-9]%d*$') then
    return 'nan'
  end
  if #text > 17 then
    return false
  end
  return tonumber(text)
end

-- Checks the typed writes in order against the keys as they will be when each runs.
-- Codes: '=T' makes the key a T whatever it was (SET, DEL), '*' changes no type (PEXPIRE),
-- '+T' needs a T or nothing (HSET…), '-T' needs a T or nothing and may empty it (HDEL…),
-- 'istring' an integer string or nothing (INCRBY), 'r' a command that cannot be checked.
-- Returns true (every write checked), false (some could not be) or a refusal.
local function check()
  local types, maybe_gone, ints = {}, {}, {}
  for w = 1, #writes do
    local code, args = writes[w][1], writes[w][2]
    local mode, want = string.sub(code, 1, 1), string.sub(code, 2)
    local k = args[2]
    if mode == 'r' then
      return false
    elseif mode == '=' then
      types[k] = want
      maybe_gone[k] = nil
      ints[k] = (want == 'none') and 0 or false
    elseif mode ~= '*' then
      local t = types[k]
      if t == nil then
        t = redis.call('TYPE', k)['ok']
        types[k] = t
      end
      if t ~= 'none' and t ~= want then
        if maybe_gone[k] then
          return false
        end
        return {'refused', w, 'WRONGTYPE Operation against a key holding the wrong kind of value'}
      end
      if mode == 'i' then
        local v = ints[k]
        if v == nil then
          if t == 'none' then
            v = 0
          else
            v = integer(redis.call('GET', k))
          end
        end
        if v == 'nan' then
          return {'refused', w, 'ERR value is not an integer or out of range'}
        end
        local by = tonumber(args[3])
        if v == false or math.abs(by) >= 1e16 or math.abs(v) >= 1e16 then
          return false
        end
        ints[k] = v + by
        types[k] = 'string'
      else
        types[k] = want
        maybe_gone[k] = (mode == '-') or nil
      end
    end
  end
  return true
end

local checked = check()
if type(checked) == 'table' then
  return checked
end

local saved = nil
if not checked then
  saved = {}
  for i = first_key, #KEYS do
    saved[i] = {redis.call('DUMP', KEYS[i]), redis.call('PTTL', KEYS[i])}
  end
end

for w = 1, #writes do
  local reply = redis.pcall(unpack(writes[w][2]))
  if type(reply) == 'table' and reply['err'] then
    if saved then
      for i, v in pairs(saved) do
        redis.call('DEL', KEYS[i])
        if v[1] then
          redis.call('RESTORE', KEYS[i], (v[2] > 0) and v[2] or 0, v[1])
        end
      end
      return {'refused', w, reply['err']}
    end
    return {'partial', w, reply['err']}
  end
end

local out = {'ok', '0'}
for e = 1, events do
  local list, n = KEYS[tonumber(ARGV[p])], tonumber(ARGV[p + 1])
  local fields = {}
  for j = 1, n do
    fields[j] = ARGV[p + 1 + j]
  end
  p = p + 2 + n
  local id = redis.call('XADD', KEYS[s], '*', unpack(fields))
  redis.call('RPUSH', list, id)
  out[#out + 1] = id
end

if has_inbox then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
-- Last, after every effect it stands for; a waiting duplicate is woken to read it.
if has_reply and reply_state ~= '?' then
  redis.call('SET', reply_key, ARGV[10], 'PX', ARGV[11])
  if reply_state == 'W' then
    redis.call('PUBLISH', ARGV[12], reply_key)
  end
  out[2] = '1'
end
if events > 0 and ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return out
