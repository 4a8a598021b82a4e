-- The fast claim: entries this process just committed, their envelopes still in its memory.
--
-- KEYS: claims hash, ordering-key lists…
-- ARGV: 1 lease ms, then per entry in commit order: id, index of its list in KEYS
--
-- An entry is claimed when it is free (no claim, or one whose lease expired) and every entry
-- before it in its key's list was claimed by this same call: its key's head, or behind heads
-- this call took. Returns {lease expiry (Unix ms), {claimed id…}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = string.format('%d', now + tonumber(ARGV[1]))
local next_at, blocked, claimed = {}, {}, {}
for i = 2, #ARGV, 2 do
  local id, list = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if not blocked[list] then
    local at = next_at[list] or 0
    local held = redis.call('HGET', KEYS[1], id)
    if redis.call('LINDEX', list, at) == id and ((not held) or tonumber(held) <= now) then
      redis.call('HSET', KEYS[1], id, expiry)
      next_at[list] = at + 1
      claimed[#claimed + 1] = id
    else
      blocked[list] = true
    end
  end
end
return {expiry, claimed}
