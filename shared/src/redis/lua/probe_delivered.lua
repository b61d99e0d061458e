-- A probe of a number back from a pause was delivered: the number sends freely again,
-- unless the probe left before the number's last pause began (a late receipt of an
-- older pause's probe says nothing of the trouble that paused it since).
-- KEYS: 1 the numbers' states (hash: 'since', 'probe', … each ':' and the number)
-- ARGV: 1 the number, 2 when the probe left (Unix ms)
-- Returns 1 if the number sends freely now, 0 if the probe was stale.
local since = tonumber(redis.call('HGET', KEYS[1], 'since' .. ':' .. ARGV[1]) or '0')
if tonumber(ARGV[2]) < since then
  return 0
end
redis.call('HDEL', KEYS[1], 'probe' .. ':' .. ARGV[1])
return 1
