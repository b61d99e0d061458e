-- Checks a guess in one atomic step: found? locked? expired? equal (constant time)?
-- A right guess claims the code for the request that made it (until ARGV[4] ms from
-- now): the code is spent by finish_verify.lua once the login is written, or released
-- for another try if it cannot be. While claimed, another right guess answers
-- 'claimed', so a code logs in at most once. A wrong guess counts, and the guess that
-- reaches the cap removes the code. Returns {outcome, attempts remaining}.
-- KEYS: 1 code record
-- ARGV: 1 mac of the guess, 2 max attempts, 3 claim token, 4 claim ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec = redis.call('HMGET', KEYS[1], {{code.mac}}, {{code.expires_at}}, {{code.locked}})
if not rec[2] then
  return {'not_found', 0}
end
if rec[3] then
  return {'locked', 0}
end
if tonumber(rec[2]) <= now then
  return {'expired', 0}
end
if not rec[1] then
  return {'not_found', 0}
end

local stored, given = rec[1], ARGV[1]
local diff = 0
if #stored ~= #given then
  diff = 1
end
for i = 1, #stored do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(given, i) or 0))
end
if diff == 0 then
  local claim = redis.call('HMGET', KEYS[1], {{code.claim}}, {{code.claim_until}})
  if claim[1] and tonumber(claim[2]) > now then
    return {'claimed', 0}
  end
  redis.call('HSET', KEYS[1], {{code.claim}}, ARGV[3], {{code.claim_until}},
    now + tonumber(ARGV[4]))
  return {'ok', 0}
end

local remaining = tonumber(ARGV[2]) - redis.call('HINCRBY', KEYS[1], {{code.attempts}}, 1)
if remaining <= 0 then
  redis.call('HDEL', KEYS[1], {{code.mac}}, {{code.sealed}})
  redis.call('HSET', KEYS[1], {{code.locked}}, 1)
  remaining = 0
end
return {'wrong', remaining}
