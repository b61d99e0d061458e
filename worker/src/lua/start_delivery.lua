-- Starts delivering a job in one round trip: is it already delivered, or already
-- failed for good (a copy whose dead-lettering did not complete)? is its code still the
-- pending one, and unexpired? Is another worker delivering a copy right now (its lease)?
-- If the way is clear, takes the lease, records status 'sending', and returns the sealed
-- code with Redis's clock.
-- KEYS: 1 code record, 2 delivered mark, 3 request status, 4 delivery lease
-- ARGV: 1 code_id, 2 status ttl s, 3 lease owner, 4 lease ms
-- Returns {outcome, sealed or reason or '', expires_at, now}; outcome one of
-- 'delivered', 'failed' (with the stored reason), 'gone', 'expired', 'busy', 'pending'.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'delivered', '', 0, now}
end
local status = redis.call('HMGET', KEYS[3], 'status', 'reason')
if status[1] == 'failed' then
  return {'failed', status[2] or '', 0, now}
end
local rec = redis.call('HMGET', KEYS[1], 'code_id', 'sealed', 'expires_at')
local expires_at = tonumber(rec[3] or '0')
if rec[1] ~= ARGV[1] then
  return {'gone', '', 0, now}
end
if expires_at <= now then
  return {'expired', '', expires_at, now}
end
if not rec[2] then
  return {'gone', '', 0, now}
end
if not redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {'busy', '', 0, now}
end
-- Field names as in otp_shared::status::fields.
redis.call('HSET', KEYS[3], 'status', 'sending', 'updated_at', now)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return {'pending', rec[2], expires_at, now}
