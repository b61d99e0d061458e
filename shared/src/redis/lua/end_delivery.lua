-- Ends a send that will not reach WATI, atomically: its final status (failed or
-- expired) with the reason, the call just made counted if there was one, the code
-- retired if it is still this send's, no other send of it reached the user and no SMS
-- carries it (unless this is that SMS), and the
-- lease released. (The caller then takes the send out of the api's admission count: a
-- global key, which a Redis Cluster keeps in another slot.)
-- 'delete' drops the code record (verify then answers "not found"); 'expire' keeps
-- the record without the code and ends its life now (verify then answers "expired");
-- 'keep' leaves the code alone (it is no longer this send's).
-- KEYS: 1 code record, 2 request status, 3 delivery lease
-- ARGV: 1 code_id, 2 state, 3 reason, 4 info ('' for none), 5 calls to count,
--       6 status ttl s, 7 lease owner, 8 'delete', 'expire' or 'keep'
local retire = ARGV[8]
if retire ~= 'delete' and retire ~= 'expire' and retire ~= 'keep' then
  return redis.error_reply('end_delivery.lua: unknown way to retire ' .. retire)
end
local now = {{now_ms}}
local rec = redis.call('HMGET', KEYS[1], {{code.code_id}}, {{code.delivered}}, {{code.fallback}})
-- A WhatsApp send does not retire a code an SMS carries: the SMS may still bring it.
local by_sms = redis.call('HGET', KEYS[2], {{status.channel}}) == {{channel.sms}}
local ours = rec[1] == ARGV[1] and not rec[2] and (by_sms or not rec[3])
if ours and retire == 'delete' then
  redis.call('DEL', KEYS[1])
elseif ours and retire == 'expire' then
  redis.call('HDEL', KEYS[1], {{code.mac}}, {{code.sealed}})
  if tonumber(redis.call('HGET', KEYS[1], {{code.expires_at}})) > now then
    redis.call('HSET', KEYS[1], {{code.expires_at}}, now)
  end
end
local RANK = {{state.ranks}}
local current = redis.call('HGET', KEYS[2], {{status.state}})
-- A receipt saying what really happened (e.g. delivered after a call that timed out)
-- is not overwritten.
if (RANK[current] or -1) < RANK[ARGV[2]] then
  redis.call('HSET', KEYS[2], {{status.state}}, ARGV[2], {{status.reason}}, ARGV[3],
    {{status.updated_at}}, now)
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[2], {{status.info}}, ARGV[4])
  end
end
if tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', KEYS[2], {{status.attempts}}, ARGV[5])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
if redis.call('GET', KEYS[3]) == ARGV[7] then
  redis.call('DEL', KEYS[3])
end
return 1
