-- Starts delivering a job in one round trip: is it already delivered, or already
-- failed for good (a copy whose dead-lettering did not complete)? Is its code still the
-- pending one, and unexpired? Is another worker delivering a copy right now (its lease)?
-- If the way is clear, takes the lease, records status 'sending' (unless a later state
-- is already there), and returns the sealed code with what is left of its life, by
-- Redis's clock.
-- KEYS: 1 code record, 2 delivered mark, 3 request status, 4 delivery lease
-- ARGV: 1 code_id, 2 status ttl s, 3 lease owner, 4 lease ms
-- Returns {'delivered'}, {'failed', reason}, {'gone'}, {'expired'}, {'busy'} or
-- {'pending', sealed, ms left}.
local now = {{now_ms}}
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'delivered'}
end
local status = redis.call('HMGET', KEYS[3], {{status.state}}, {{status.reason}})
if status[1] == {{state.failed}} then
  return {'failed', status[2] or ''}
end
local rec = redis.call('HMGET', KEYS[1], {{code.code_id}}, {{code.sealed}}, {{code.expires_at}})
if rec[1] ~= ARGV[1] then
  return {'gone'}
end
local expires_at = tonumber(rec[3] or '0')
if expires_at <= now then
  return {'expired'}
end
if not rec[2] then
  return {'gone'}
end
if not redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {'busy'}
end
local RANK = {{state.ranks}}
if (RANK[status[1]] or -1) < RANK[{{state.sending}}] then
  redis.call('HSET', KEYS[3], {{status.state}}, {{state.sending}}, {{status.updated_at}}, now)
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
return {'pending', rec[2], expires_at - now}
