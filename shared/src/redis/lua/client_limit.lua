-- Counts one request of a client address in a fixed one-minute window. Returns 0 when
-- it is allowed, else the milliseconds until the window ends.
-- KEYS: 1 counter
-- ARGV: 1 limit, 2 window ms
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
if n > tonumber(ARGV[1]) then
  return ttl
end
return 0
