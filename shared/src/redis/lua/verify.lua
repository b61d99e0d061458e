-- Checks a guess in one atomic step: found? locked? expired? equal (constant time)?
-- A guess is either bound to a send of the code (ARGV[5], its request id) or not.
-- Bound, it counts against that send's own attempts and can lock only that send;
-- unbound, against the code's shared attempts, whose cap locks unbound guessing only,
-- never a send. Every wrong guess also counts for the phone across its codes (KEYS[2],
-- until ARGV[6] ms after the last): past a cap, its new codes grow longer (send.lua).
-- A right guess claims the code for the request that made it (until ARGV[4] ms from
-- now): the code is spent by finish_verify.lua once the login is written, or released
-- for another try if it cannot be. While claimed, another right guess answers
-- 'claimed', so a code logs in at most once. Returns {outcome, attempts remaining}
-- ({'ok', 1 when an SMS carried the code else 0, the code's id} for a right guess).
-- Unbound guesses of a known client (ARGV[7]) count against that client's own attempts
-- at the code, so a stranger's wrong guesses lock the stranger, not the owner; all
-- clients' unbound guesses together are capped at ARGV[8] times the attempts, which
-- locks unbound guessing for everyone (a distributed brute force).
-- KEYS: 1 code record, 2 phone's wrong guesses
-- ARGV: 1 mac of the guess, 2 max attempts, 3 claim token, 4 claim ms,
--       5 request id of the send the guess is bound to ('' for none),
--       6 ms the phone's count lives after its last wrong guess,
--       7 the guessing client ('' when unknown: it counts as everyone),
--       8 clients' worth of unbound attempts the code allows in all
local now = {{now_ms}}
local max = tonumber(ARGV[2])
local rec = redis.call('HMGET', KEYS[1], {{code.mac}}, {{code.expires_at}}, {{code.locked}})
if not rec[2] then
  return {'not_found', 0}
end
local bound = ARGV[5] ~= ''
local by_client = not bound and ARGV[7] ~= ''
local guesses_field = {{code.guesses_prefix}} .. ARGV[5]
if by_client then
  guesses_field = {{code.guesses_prefix}} .. 'client:' .. ARGV[7]
end
if bound then
  if redis.call('HEXISTS', KEYS[1], {{code.send_prefix}} .. ARGV[5]) == 0 then
    return {'not_found', 0}
  end
  if tonumber(redis.call('HGET', KEYS[1], guesses_field) or '0') >= max then
    return {'locked', 0}
  end
elseif rec[3] then
  return {'locked', 0}
elseif by_client and tonumber(redis.call('HGET', KEYS[1], guesses_field) or '0') >= max then
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
  -- The second item says whether an SMS carried the code (the metrics' channel); the
  -- third names the code (its first login makes a user new).
  return {'ok', redis.call('HEXISTS', KEYS[1], {{code.fallback}}),
    redis.call('HGET', KEYS[1], {{code.code_id}})}
end

redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local remaining
if bound then
  remaining = max - redis.call('HINCRBY', KEYS[1], guesses_field, 1)
elseif by_client then
  remaining = max - redis.call('HINCRBY', KEYS[1], guesses_field, 1)
  local all = redis.call('HINCRBY', KEYS[1], {{code.attempts}}, 1)
  if all >= max * tonumber(ARGV[8]) then
    redis.call('HSET', KEYS[1], {{code.locked}}, 1)
  end
else
  remaining = max - redis.call('HINCRBY', KEYS[1], {{code.attempts}}, 1)
  if remaining <= 0 then
    redis.call('HSET', KEYS[1], {{code.locked}}, 1)
  end
end
return {'wrong', math.max(remaining, 0)}
