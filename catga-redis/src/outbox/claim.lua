-- The recovery claim: walks the outbox stream from `start`, claiming the entries that are due.
--
-- KEYS: stream, claims hash
-- ARGV: 1 start ('-' or '(' .. id), 2 most entries to read, 3 most entries to claim,
--       4 lease ms, 5 prefix of the ordering-key lists, 6 the ordering-key field
--
-- An entry is due when it is free (no claim, or one whose lease expired) and is its key's
-- head, or behind heads this call claimed. An entry with no ordering key, or missing from its
-- key's list (written by hand), has no order to keep. A list id whose entry is gone (deleted
-- by hand) is dropped, or it would hold its key back for ever.
-- Returns {lease expiry (Unix ms), last id read, 1 if more may follow else 0, {{id, fields}…}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = string.format('%d', now + tonumber(ARGV[4]))
local limit = tonumber(ARGV[3])
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local next_at, blocked, claimed = {}, {}, {}
local last, read = '', 0

local function gone(id)
  return #redis.call('XRANGE', KEYS[1], id, id) == 0
end

for _, entry in ipairs(entries) do
  if #claimed >= limit then
    break
  end
  local id, fields = entry[1], entry[2]
  last = id
  read = read + 1
  local held = redis.call('HGET', KEYS[2], id)
  local due = (not held) or tonumber(held) <= now
  local key = nil
  for j = 1, #fields - 1, 2 do
    if fields[j] == ARGV[6] then
      key = fields[j + 1]
      break
    end
  end
  if key then
    local list = ARGV[5] .. key
    if blocked[list] then
      due = false
    else
      local at = next_at[list] or 0
      local head = redis.call('LINDEX', list, at)
      local dropped = 0
      while head and head ~= id and dropped < 100 and gone(head) do
        redis.call('LREM', list, 1, head)
        head = redis.call('LINDEX', list, at)
        dropped = dropped + 1
      end
      if head == id then
        if due then
          next_at[list] = at + 1
        else
          blocked[list] = true
        end
      elseif head then
        due = false
        blocked[list] = true
      end
    end
  end
  if due then
    redis.call('HSET', KEYS[2], id, expiry)
    claimed[#claimed + 1] = {id, fields}
  end
end
local more = (#entries >= tonumber(ARGV[2])) or (read < #entries)
return {expiry, last, more and 1 or 0, claimed}
