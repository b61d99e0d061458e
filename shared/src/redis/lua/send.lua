-- Accepts a send request for one phone, atomically: checks the cooldown and the
-- phone's sends in the last hour, then re-sends the pending code or stores a new one,
-- and marks the request queued (and a send of its code, so guesses can be bound to it).
-- Returns {kind, code_id, ms, received, cooldown}: kind 'new' or 'resend' with the
-- code's remaining lifetime; 'limited' with the wait before another send may be
-- accepted; 'check' when the phone's sends this hour need a human check the request
-- has not passed; or 'longer' (nothing done) when a new code must be longer: the phone
-- has had too many wrong guesses. received: 1 for a re-send of a code a delivered
-- receipt says the phone has, and, for 'limited' and 'check', 1 when a code is pending
-- for the phone. cooldown: the wait this send set before the phone's next.
-- The cooldown doubles with each send of the hour that no login followed (finish_verify
-- forgets them), but never outlasts the code just sent: whoever the cooldown keeps
-- waiting has a pending code to enter, if the code reached the phone. For the same
-- reason the hour's last send keeps its code until the hour's window lets the phone
-- have another.
-- KEYS: 1 code record, 2 cooldown, 3 phone's send times, 4 request status,
--       5 phone's wrong guesses
-- ARGV: 1 new code_id, 2 mac, 3 sealed, 4 ttl ms, 5 record grace ms, 6 cooldown ms,
--       7 max sends per code, 8 sends per phone per hour, 9 request id, 10 status ttl s,
--       11 phone, 12 digits of the new code, 13 digits after too many wrong guesses,
--       14 wrong guesses per phone before codes grow (0: never), 15 the send's channel
--       (by SMS, the code is marked as carried by this request's SMS), 16 sends an hour
--       a phone gets without a human check (0: no human check),
--       17 '1' when the request passed a human check (it still counts against ARGV 8)
local now = {{now_ms}}
local hour_ms = 3600000

-- A refused send says whether a code is pending for the phone: the user may have it.
local pending = redis.call('HMGET', KEYS[1], {{code.sealed}}, {{code.expires_at}})
local code_pending = 0
if pending[1] and tonumber(pending[2] or '0') > now then
  code_pending = 1
end

local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then
  return {'limited', '', wait, code_pending, 0}
end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - hour_ms)
local sent_this_hour = redis.call('ZCARD', KEYS[3])
if sent_this_hour >= tonumber(ARGV[8]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'limited', '', math.max(1, tonumber(oldest[2]) + hour_ms - now), code_pending, 0}
end
-- With a human check, the sends past the free ones need it: a script gets no further,
-- a person does, up to the hour's cap.
local unchecked = tonumber(ARGV[16])
if unchecked > 0 and sent_this_hour >= unchecked and ARGV[17] ~= '1' then
  return {'check', '', 0, code_pending, 0}
end

local rec = redis.call('HMGET', KEYS[1], {{code.code_id}}, {{code.sealed}}, {{code.expires_at}},
  {{code.sends}}, {{code.received}})
local kind, code_id, expires_at
-- A re-send of a code the phone already received (a delivered receipt) is no user whose
-- code has not come: it gets no room kept for those.
local received = 0
if rec[1] and rec[2] and tonumber(rec[3]) > now then
  expires_at = tonumber(rec[3])
  if tonumber(rec[4]) >= tonumber(ARGV[7]) then
    return {'limited', '', expires_at - now, code_pending, 0}
  end
  redis.call('HINCRBY', KEYS[1], {{code.sends}}, 1)
  kind, code_id = 'resend', rec[1]
  if rec[5] then
    received = 1
  end
else
  local cap = tonumber(ARGV[14])
  if cap > 0 and tonumber(ARGV[12]) < tonumber(ARGV[13])
      and tonumber(redis.call('GET', KEYS[5]) or '0') >= cap then
    return {'longer', '', 0, 0, 0}
  end
  expires_at = now + tonumber(ARGV[4])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], {{code.code_id}}, ARGV[1], {{code.mac}}, ARGV[2],
    {{code.sealed}}, ARGV[3], {{code.expires_at}}, expires_at, {{code.attempts}}, 0,
    {{code.sends}}, 1)
  redis.call('PEXPIREAT', KEYS[1], expires_at + tonumber(ARGV[5]))
  kind, code_id = 'new', ARGV[1]
end

redis.call('HSET', KEYS[1], {{code.send_prefix}} .. ARGV[9], 1)
if ARGV[15] == {{channel.sms}} then
  redis.call('HSET', KEYS[1], {{code.fallback}}, ARGV[9])
end

-- The hour's last send keeps its code until the phone may have another: a stranger who
-- spends the phone's sends leaves the owner holding the code they brought, not a wait
-- for the window.
if sent_this_hour + 1 >= tonumber(ARGV[8]) then
  local oldest = now
  if sent_this_hour > 0 then
    oldest = tonumber(redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2])
  end
  if oldest + hour_ms > expires_at then
    expires_at = oldest + hour_ms
    redis.call('HSET', KEYS[1], {{code.expires_at}}, expires_at)
    redis.call('PEXPIREAT', KEYS[1], expires_at + tonumber(ARGV[5]))
  end
end

local cooldown = math.min(tonumber(ARGV[6]) * 2 ^ sent_this_hour, expires_at - now)
if cooldown > 0 then
  redis.call('SET', KEYS[2], ARGV[9], 'PX', math.floor(cooldown))
end
redis.call('ZADD', KEYS[3], now, ARGV[9])
redis.call('PEXPIRE', KEYS[3], hour_ms)
redis.call('HSET', KEYS[4], {{status.state}}, {{state.queued}}, {{status.attempts}}, 0,
  {{status.updated_at}}, now, {{status.accepted_at}}, now, {{status.phone}}, ARGV[11],
  {{status.code_id}}, code_id, {{status.channel}}, ARGV[15])
redis.call('EXPIRE', KEYS[4], ARGV[10])
return {kind, code_id, expires_at - now, received, math.floor(cooldown)}
