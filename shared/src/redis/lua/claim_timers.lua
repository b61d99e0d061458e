-- Claims up to ARGV[1] fallback timers that have run out, each for ARGV[2] ms: a claimed
-- timer runs out again then, so one whose worker stopped before checking it comes back
-- to any worker. Answers the ms until the next timer runs out (-1: none is set), and
-- the claimed sends' jobs after it (none unless one had run out).
-- KEYS: 1 the timers (scores are Unix ms, so 0 is before every one)
local now = {{now_ms}}
local due = redis.call('ZRANGE', KEYS[1], 0, now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
if #due == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first == 0 then
    return {-1}
  end
  return {math.max(0, tonumber(first[2]) - now)}
end
local again = now + tonumber(ARGV[2])
local args = {}
for _, job in ipairs(due) do
  args[#args + 1] = again
  args[#args + 1] = job
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
local reply = {0}
for _, job in ipairs(due) do
  reply[#reply + 1] = job
end
return reply
