-- A receipt says a sending number is in trouble: Meta refused a message for the number's
-- throughput or spam limit (ARGV[2] 'limit'), or failed one more message (ARGV[2]
-- 'failure'; only a burst of them, ARGV[6] within ARGV[7] ms, counts as trouble). The
-- number is paused: ARGV[4] ms the first time, twice as long each time it is paused
-- again, at most ARGV[5] ms; a number without a pause for twice that long starts over.
-- When the pause ends, the number sends only probes (claim_budget.lua) until a delivery
-- receipt for one clears it. A message that left before the last pause began, or while
-- it lasts, is trouble that pause already answers.
-- KEYS: 1 the numbers' states (hash: 'paused', 'since', 'strikes', 'probe', 'fails',
--       'fails_from', each ':' and the number)
-- ARGV: 1 the number, 2 'limit' or 'failure', 3 when the failed message left (Unix ms),
--       4 first pause ms, 5 longest pause ms, 6 failures that make a burst,
--       7 the burst's window ms
-- Returns {'paused', ms}, {'counted', failures in the window} or {'stale', 0}.
if ARGV[2] ~= 'limit' and ARGV[2] ~= 'failure' then
  return redis.error_reply('sender_trouble.lua: unknown trouble ' .. ARGV[2])
end
local now = {{now_ms}}
local name = ARGV[1]
local function field(kind)
  return kind .. ':' .. name
end
local first, longest = tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], field('paused'), field('since'), field('strikes'),
  field('fails'), field('fails_from'))
local paused_until = tonumber(state[1] or '0')
local since = tonumber(state[2] or '0')
local strikes = tonumber(state[3] or '0')
if tonumber(ARGV[3]) < since or paused_until > now then
  return {'stale', 0}
end
if ARGV[2] == 'failure' then
  local fails, from = tonumber(state[4] or '0'), tonumber(state[5] or '0')
  if from + tonumber(ARGV[7]) <= now then
    fails, from = 0, now
  end
  fails = fails + 1
  if fails < tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[1], field('fails'), fails, field('fails_from'), from)
    return {'counted', fails}
  end
end
if since + 2 * longest < now then
  strikes = 0
end
strikes = strikes + 1
local pause = math.min(first * 2 ^ (strikes - 1), longest)
redis.call('HSET', KEYS[1], field('paused'), string.format('%.0f', now + pause),
  field('since'), now, field('strikes'), strikes, field('probe'), 0, field('fails'), 0,
  field('fails_from'), now)
return {'paused', string.format('%.0f', pause)}
