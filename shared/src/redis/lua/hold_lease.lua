-- Extends or releases a delivery lease, only for its owner.
-- KEYS: 1 delivery lease
-- ARGV: 1 owner, 2 lease ms (0 releases it)
-- Returns 1 if the caller holds the lease, 0 if another worker does, -1 if nobody does
-- (it lapsed: the caller must not assume the request is still undelivered).
local holder = redis.call('GET', KEYS[1])
if not holder then
  return -1
end
if holder ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
