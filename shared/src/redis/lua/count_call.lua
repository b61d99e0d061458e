-- Counts a call to WATI that did not end the send (a transient failure).
-- KEYS: 1 request status
-- ARGV: 1 status ttl s
local now = {{now_ms}}
redis.call('HINCRBY', KEYS[1], {{status.attempts}}, 1)
redis.call('HSET', KEYS[1], {{status.updated_at}}, now)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
