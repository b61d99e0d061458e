-- Admits a send if the sends already admitted and not yet finished leave room: one
-- atomic check-and-reserve shared by every api replica. Sends whose codes have expired
-- can never be sent, so they stop counting by themselves. A worker removes a send when
-- it is finished (sent, failed or expired).
-- KEYS: 1 pending sends (sorted set: request id scored by the Unix ms it stops counting)
-- ARGV: 1 capacity for this send's code, 2 request id, 3 ms left of the code's life
-- Returns {1, pending} when admitted (counting this one), {0, pending} when full.
local now = {{now_ms}}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local pending = redis.call('ZCARD', KEYS[1])
if pending >= tonumber(ARGV[1]) then
  return {0, pending}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
-- The set lives as long as its longest-lived entry.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, pending + 1}
