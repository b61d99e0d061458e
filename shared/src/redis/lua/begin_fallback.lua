-- Begins a request's SMS fallback, atomically and at most once per code: the request's
-- first delivery (WhatsApp) has not been delivered (a failure, or no receipt in time),
-- its code is still the phone's pending one and unexpired, and no SMS carries it yet.
-- Marks the code as carried by this request's SMS and makes the fallback's status
-- record ('queued', channel 'sms'). A repeat by the same request (a job redelivered
-- before its SMS job was confirmed) answers 'again', so the SMS job is published again;
-- the SMS delivery then sends it once.
-- KEYS: 1 code record, 2 the request's status, 3 the fallback's status
-- ARGV: 1 request id, 2 status ttl s
-- Returns 'new', 'again', 'taken' (another request's SMS carries the code), 'delivered'
-- (WhatsApp delivered it after all, or another send of the code) or 'gone' (verified, expired, replaced, or unknown).
local now = {{now_ms}}
local RANK = {{state.ranks}}
local first = redis.call('HMGET', KEYS[2], {{status.state}}, {{status.code_id}}, {{status.phone}})
if not first[1] then
  return 'gone'
end
if (RANK[first[1]] or 0) >= RANK[{{state.delivered}}] then
  return 'delivered'
end
local rec = redis.call('HMGET', KEYS[1], {{code.code_id}}, {{code.sealed}}, {{code.expires_at}},
  {{code.fallback}}, {{code.received}})
if rec[1] ~= first[2] or not rec[2] or tonumber(rec[3] or '0') <= now then
  return 'gone'
end
-- Another send of the same code was delivered: the user has it.
if rec[5] then
  return 'delivered'
end
if rec[4] == ARGV[1] then
  return 'again'
end
if rec[4] then
  return 'taken'
end
redis.call('HSET', KEYS[1], {{code.fallback}}, ARGV[1])
redis.call('HSET', KEYS[3], {{status.state}}, {{state.queued}}, {{status.attempts}}, 0,
  {{status.updated_at}}, now, {{status.accepted_at}}, now, {{status.phone}}, first[3],
  {{status.code_id}}, first[2], {{status.channel}}, {{channel.sms}})
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 'new'
