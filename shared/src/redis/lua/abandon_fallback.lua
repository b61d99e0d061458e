-- Undoes a fallback begun whose SMS job could not be published, for a caller that does
-- not repeat it (the api, answering a failure receipt that WATI will not send again):
-- the code is carried by this request's SMS no more, so it can be retired, and the
-- fallback's status says it failed, so a copy of the job published after all (a lost
-- confirm) sends nothing. A fallback a worker has begun delivering is left to it.
-- KEYS: 1 code record, 2 the fallback's status
-- ARGV: 1 request id, 2 reason
-- Returns 1 when undone, 0 when left.
local now = {{now_ms}}
if redis.call('HGET', KEYS[2], {{status.state}}) ~= {{state.queued}} then
  return 0
end
redis.call('HSET', KEYS[2], {{status.state}}, {{state.failed}}, {{status.reason}}, ARGV[2],
  {{status.updated_at}}, now)
if redis.call('HGET', KEYS[1], {{code.fallback}}) == ARGV[1] then
  redis.call('HDEL', KEYS[1], {{code.fallback}})
end
return 1
