-- Extends or releases a delivery lease for its owner. A lease that lapsed (nobody holds
-- it) is taken back; only a lease held by another worker is refused.
-- KEYS: 1 delivery lease
-- ARGV: 1 owner, 2 lease ms (0 releases it)
-- Returns 1 if the caller holds (or held, when releasing) the lease, else 0.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif holder then
  redis.call('DEL', KEYS[1])
end
return 1
