-- Removes a code the worker gave up on, if it is still the one the job was for.
-- 'delete' drops the whole record (verify then answers "not found"); 'expire' keeps
-- the record without the code (verify then answers "expired").
-- KEYS: 1 code record
-- ARGV: 1 code_id, 2 'delete' or 'expire'
if redis.call('HGET', KEYS[1], 'code_id') ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'delete' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'mac', 'sealed')
end
return 1
