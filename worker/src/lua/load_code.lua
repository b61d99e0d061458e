-- Reads what the worker needs to send a code, with Redis's clock so that expiry is
-- judged by the same clock the api stored it with.
-- KEYS: 1 code record
-- Returns {code_id or '', sealed or '', expires_at or 0, now}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec = redis.call('HMGET', KEYS[1], 'code_id', 'sealed', 'expires_at')
return {rec[1] or '', rec[2] or '', tonumber(rec[3] or '0'), now}
