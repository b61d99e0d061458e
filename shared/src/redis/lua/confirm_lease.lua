-- Confirms a delivery lease right before its call leaves, as hold_lease.lua extends it,
-- and records in the delivery's status the sending number the call goes from, when, and
-- whether as a probe: a receipt that comes before the worker records the send (Meta can
-- refuse a message at once) still names the number.
-- KEYS: 1 delivery lease, 2 the delivery's status
-- ARGV: 1 owner, 2 lease ms, 3 the sending number, 4 1 if a probe else 0
-- Returns 1 if the caller holds the lease, 0 if another worker does, -1 if nobody does.
local holder = redis.call('GET', KEYS[1])
if not holder then
  return -1
end
if holder ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], {{status.sender}}, ARGV[3], {{status.sent_at}}, {{now_ms}},
    {{status.probe}}, ARGV[4])
end
return 1
