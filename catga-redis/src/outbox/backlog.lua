-- The outbox's backlog: how many entries wait in the stream, and how long the oldest has.
--
-- KEYS: stream
--
-- A published entry leaves the stream (`XDEL`), so every entry in it is unpublished, claimed
-- ones included. The oldest is the first; its id is the server's clock when it was added (ms),
-- compared with the server's clock now, in microseconds so an entry added a moment ago still
-- has an age. Reads only. Returns {entries, age of the oldest in µs (0 when empty)}.
local entries = redis.call('XLEN', KEYS[1])
if entries == 0 then
  return {0, 0}
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then
  return {entries, 0}
end
local added_ms = tonumber(string.match(first[1][1], '^(%d+)')) or 0
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {entries, math.max(now_us - added_ms * 1000, 0)}
