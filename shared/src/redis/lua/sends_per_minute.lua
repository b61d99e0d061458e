-- Counts a send against SENDS_PER_MINUTE, over all phones and api replicas, in one
-- atomic step. A sliding minute, estimated from this minute's count and the last
-- minute's, weighted by how much of it still falls in the window.
-- KEYS: 1 counts (hash: minute number -> sends)
-- ARGV: 1 the limit for this kind of send (new codes leave a tenth to re-sends)
-- Returns {1, minute} when counted (the minute to give it back to), {0, ms to wait}.
local now = {{now_ms}}
local minute = math.floor(now / 60000)
local into = (now % 60000) / 60000
local current = tonumber(redis.call('HGET', KEYS[1], minute) or '0')
local previous = tonumber(redis.call('HGET', KEYS[1], minute - 1) or '0')
local limit = tonumber(ARGV[1])
if previous * (1 - into) + current + 1 > limit then
  -- Room comes back as the last minute slides out: at the latest when this one ends.
  local wait = 60000 - now % 60000
  if current + 1 <= limit and previous > 0 then
    local needed = 1 - (limit - current - 1) / previous
    wait = math.ceil((needed - into) * 60000)
  end
  return {0, math.max(wait, 1)}
end
redis.call('HINCRBY', KEYS[1], minute, 1)
redis.call('HDEL', KEYS[1], minute - 2)
redis.call('PEXPIRE', KEYS[1], 120000)
return {1, minute}
