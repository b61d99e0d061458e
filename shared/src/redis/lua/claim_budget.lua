-- Claims, for a call about to leave now, a slot of the WATI call budget and room in the
-- WhatsApp message budget, shared by all workers. Calls are evenly spaced, so that no
-- window of the plan's length holds more than its limit; messages are counted over a
-- sliding one-second window, so that no second holds more than the limit. A call
-- carries as many of the wanted recipients as the message budget has room for.
-- KEYS: 1 next call time (µs), 2 message window (list of 'µs:count', oldest first),
--       3 sum of the window's counts
-- ARGV: 1 call interval µs (0: no call limit), 2 messages per window (0: no limit),
--       3 message window µs, 4 recipients wanted
-- Returns {'granted', recipients} or {'wait', µs, 'calls' or 'messages'}.
local now = {{now_us}}
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local granted = tonumber(ARGV[4])

if interval > 0 then
  local next_call = tonumber(redis.call('GET', KEYS[1]) or '0')
  if next_call > now then
    return {'wait', string.format('%.0f', next_call - now), 'calls'}
  end
end

local function entry_time(entry)
  return tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))
end

local function entry_count(entry)
  return tonumber(string.sub(entry, string.find(entry, ':', 1, true) + 1))
end

if limit > 0 then
  local sum = tonumber(redis.call('GET', KEYS[3]) or '-1')
  if sum < 0 then
    -- The sum was lost (evicted, or a failover dropped it): count the window again.
    sum = 0
    for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
      sum = sum + entry_count(entry)
    end
  end
  while true do
    local head = redis.call('LINDEX', KEYS[2], 0)
    if not head then
      sum = 0
      break
    end
    if entry_time(head) > now - window then
      break
    end
    redis.call('LPOP', KEYS[2])
    sum = sum - entry_count(head)
  end
  local keep_ms = math.ceil(window / 1000) + 1000
  if sum >= limit then
    redis.call('SET', KEYS[3], sum, 'PX', keep_ms)
    local oldest = entry_time(redis.call('LINDEX', KEYS[2], 0))
    return {'wait', string.format('%.0f', oldest + window - now), 'messages'}
  end
  granted = math.min(granted, limit - sum)
  redis.call('RPUSH', KEYS[2], string.format('%.0f', now) .. ':' .. granted)
  redis.call('SET', KEYS[3], sum + granted, 'PX', keep_ms)
  redis.call('PEXPIRE', KEYS[2], keep_ms)
end

if interval > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX',
    math.ceil(interval / 1000) + 1000)
end
return {'granted', granted, ''}
