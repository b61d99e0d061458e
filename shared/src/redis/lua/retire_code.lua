-- Retires a request's code after WhatsApp failed it and no SMS is to carry it: the code
-- record goes, if it still holds the request's code, no send of it reached the user and
-- no SMS carries it (verify then answers "not found").
-- KEYS: 1 code record, 2 the request's status
local code_id = redis.call('HGET', KEYS[2], {{status.code_id}})
local rec = redis.call('HMGET', KEYS[1], {{code.code_id}}, {{code.received}}, {{code.fallback}})
if code_id and rec[1] == code_id and not rec[2] and not rec[3] then
  redis.call('DEL', KEYS[1])
end
return 1
