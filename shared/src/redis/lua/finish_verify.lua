-- Spends a claimed code (its login is written) or releases it (it could not be), only
-- for the request that claimed it. A login also forgets the phone's sends of the hour:
-- they were the owner's, and neither lengthen its cooldown nor count towards a human
-- check any more.
-- KEYS: 1 code record, 2 phone's send times
-- ARGV: 1 claim token, 2 'spend' or 'release'
-- Returns 1 if the claim was this request's, 0 if not (it lapsed and another took it).
if ARGV[2] ~= 'spend' and ARGV[2] ~= 'release' then
  return redis.error_reply('finish_verify.lua: unknown way ' .. ARGV[2])
end
if redis.call('HGET', KEYS[1], {{code.claim}}) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'spend' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('HDEL', KEYS[1], {{code.claim}}, {{code.claim_until}})
end
return 1
