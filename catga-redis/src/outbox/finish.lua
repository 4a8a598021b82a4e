-- A relay round's end: removes what was published, releases what was not.
--
-- KEYS: stream, claims hash, ordering-key lists…
-- ARGV: 1 the round's lease expiry, 2 count of published entries, then per published entry:
--       id, index of its list in KEYS (0: none); then the ids to release
--
-- A published entry leaves the stream, the claims and its list: popped when it is the head
-- (the usual case: a key's entries are published in order), else removed where it is. A
-- released claim is deleted only if it is still this round's (another relay may hold it
-- since the lease expired). Returns the count removed.
local n = tonumber(ARGV[2])
local p = 3
for _ = 1, n do
  local id, li = ARGV[p], tonumber(ARGV[p + 1])
  p = p + 2
  redis.call('XDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  if li > 0 then
    if redis.call('LINDEX', KEYS[li], 0) == id then
      redis.call('LPOP', KEYS[li])
    else
      redis.call('LREM', KEYS[li], 1, id)
    end
  end
end
for i = p, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return n
