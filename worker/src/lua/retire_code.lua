-- Removes a code the worker gave up on, if it is still the one the job was for.
-- 'delete' drops the whole record (verify then answers "not found"); 'expire' keeps
-- the record without the code and ends its life now (verify then answers "expired"),
-- also when the worker gives up shortly before the code's own expiry.
-- KEYS: 1 code record
-- ARGV: 1 code_id, 2 'delete' or 'expire'
if redis.call('HGET', KEYS[1], 'code_id') ~= ARGV[1] then
  return 0
end
-- Another request already delivered this code: the user has it, leave it be.
if redis.call('HEXISTS', KEYS[1], 'delivered') == 1 then
  return 0
end
if ARGV[2] == 'delete' then
  redis.call('DEL', KEYS[1])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HDEL', KEYS[1], 'mac', 'sealed')
  if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) > now then
    redis.call('HSET', KEYS[1], 'expires_at', now)
  end
end
return 1
