-- WATI answered 429: no worker calls again before ARGV[1] µs from now. Moves the next
-- call time of the shared budget (claim_budget.lua) later, never earlier.
-- KEYS: 1 next call time (µs)
-- ARGV: 1 hold µs
local now = {{now_us}}
local hold = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + hold > current then
  redis.call('SET', KEYS[1], string.format('%.0f', now + hold), 'PX',
    math.ceil(hold / 1000) + 1000)
end
return 1
