-- Takes back what send.lua did for a request whose job could not be published, so a
-- failed request leaves no code without a job and costs the user no rate limit.
-- KEYS: 1 code record, 2 cooldown, 3 phone's send times, 4 request status
-- ARGV: 1 kind ('new' or 'resend'), 2 code_id, 3 request id
if ARGV[1] ~= 'new' and ARGV[1] ~= 'resend' then
  return redis.error_reply('undo_send.lua: unknown kind ' .. ARGV[1])
end
if redis.call('HGET', KEYS[1], {{code.code_id}}) == ARGV[2] then
  -- A new code is removed only if no re-send has used it meanwhile; that re-send's
  -- job is the code's job now.
  local sends = tonumber(redis.call('HGET', KEYS[1], {{code.sends}}) or '0')
  if ARGV[1] == 'new' and sends <= 1 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HINCRBY', KEYS[1], {{code.sends}}, -1)
    redis.call('HDEL', KEYS[1], {{code.send_prefix}} .. ARGV[3])
    -- An SMS re-send that never went carries the code no more: the WhatsApp send's
    -- fallback and retiring stay its.
    if redis.call('HGET', KEYS[1], {{code.fallback}}) == ARGV[3] then
      redis.call('HDEL', KEYS[1], {{code.fallback}})
    end
  end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[4])
return 1
