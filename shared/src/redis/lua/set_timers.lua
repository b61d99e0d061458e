-- Sets the fallback timers of WhatsApp sends WATI accepted together: each runs out
-- ARGV[1] ms from now. A send set again (its job redelivered) runs out from now again.
-- KEYS: 1 the timers (a sorted set of send jobs scored by when their timer runs out)
-- ARGV[2]: the sends' jobs, one to a line (a job's JSON holds no line break)
local due = {{now_ms}} + tonumber(ARGV[1])
local args = {}
for job in string.gmatch(ARGV[2], '[^\n]+') do
  args[#args + 1] = due
  args[#args + 1] = job
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
end
return #args / 2
