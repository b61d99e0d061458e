-- Records a delivery WATI accepted, atomically: the request's delivered mark, status
-- 'sent' with the successful call counted, the lease released, and, if the code record
-- still holds this code, a mark that it reached the user (so a later re-send that gives
-- up does not retire a code the user already has). (The caller then takes the send out
-- of the api's admission count, a global key in another slot of a Redis Cluster.)
-- A WhatsApp send records the number it went from, when, and whether as a probe, and its
-- languages: a receipt about the number's trouble finds them there.
-- KEYS: 1 delivered mark, 2 request status, 3 delivery lease, 4 code record
-- ARGV: 1 delivered mark ttl s, 2 status ttl s, 3 code_id, 4 lease owner, 5 the sending
--       number ('' for none), 6 1 if a probe else 0, 7 the send's languages
local now = {{now_ms}}
redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])
local RANK = {{state.ranks}}
local current = redis.call('HGET', KEYS[2], {{status.state}})
-- A receipt may have come first (WhatsApp is fast): it is not taken back.
if (RANK[current] or -1) < RANK[{{state.sent}}] then
  redis.call('HSET', KEYS[2], {{status.state}}, {{state.sent}}, {{status.updated_at}}, now)
end
redis.call('HINCRBY', KEYS[2], {{status.attempts}}, 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], {{status.sender}}, ARGV[5], {{status.sent_at}}, now,
    {{status.probe}}, ARGV[6], {{status.locales}}, ARGV[7])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
if redis.call('HGET', KEYS[4], {{code.code_id}}) == ARGV[3] then
  redis.call('HSET', KEYS[4], {{code.delivered}}, 1)
end
return 1
