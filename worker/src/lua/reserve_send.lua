-- Reserves the next slot of the shared WATI send rate (GCRA with no burst): slots are
-- one interval apart across all workers. Returns {reserved, wait µs}: 1 and the wait
-- until the reserved slot, or 0 and the wait that would be needed when it exceeds
-- the caller's limit (nothing reserved then).
-- KEYS: 1 theoretical arrival time of the next slot (µs, Redis clock)
-- ARGV: 1 interval µs, 2 longest acceptable wait µs
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local wait = tat - now
if wait > tonumber(ARGV[2]) then
  return {0, wait}
end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {1, wait}
