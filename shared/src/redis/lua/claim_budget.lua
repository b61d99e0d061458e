-- Claims, for a call about to leave now, a slot of the WATI call budget (the tenant's,
-- shared by all numbers) and room in one sending number's message budget, shared by
-- all workers. Calls are evenly spaced, so that no window of the plan's length holds more
-- than its limit; each number's messages are counted over a sliding window (Meta's
-- second and a slack), so that no second holds more than its rate. The call goes from the
-- number with the most room, and carries as many of the wanted recipients as that room.
-- A paused number gets nothing until its pause ends; then, until a receipt shows it
-- delivers again, only a probe: a call of at most ARGV[4] recipients, one at a time.
-- KEYS: 1 next call time (µs), 2 the numbers' states (hash: 'paused', 'probe', … by
--       number), then for each number in ARGV[5]'s order: its message window (list of
--       'µs:count', oldest first) and the sum of the window's counts
-- ARGV: 1 call interval µs (0: no call limit), 2 message window µs, 3 recipients wanted,
--       4 most recipients of a probe, 5 the numbers 'name=rate,…' (0: no limit),
--       6 how long a probe is waited for before another, ms
-- Returns {'granted', recipients, number's position (1-based), 1 if a probe else 0} or
-- {'wait', µs, 'calls', 'messages' or 'paused'}.
local now = {{now_us}}
local now_ms = math.floor(now / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local probe_size = tonumber(ARGV[4])
local probe_wait_ms = tonumber(ARGV[6])

if interval > 0 then
  local next_call = tonumber(redis.call('GET', KEYS[1]) or '0')
  if next_call > now then
    return {'wait', string.format('%.0f', next_call - now), 'calls', 0}
  end
end

local function entry_time(entry)
  return tonumber(string.sub(entry, 1, string.find(entry, ':', 1, true) - 1))
end

local function entry_count(entry)
  return tonumber(string.sub(entry, string.find(entry, ':', 1, true) + 1))
end

-- What is in a number's window now, after dropping what left it.
local function window_sum(list, sum_key)
  local sum = tonumber(redis.call('GET', sum_key) or '-1')
  if sum < 0 then
    -- The sum was lost (evicted, or a failover dropped it): count the window again.
    sum = 0
    for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
      sum = sum + entry_count(entry)
    end
  end
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then
      return 0
    end
    if entry_time(head) > now - window then
      return sum
    end
    redis.call('LPOP', list)
    sum = sum - entry_count(head)
  end
end

local keep_ms = math.ceil(window / 1000) + 1000
local best, best_room, best_probe = 0, 0, 0
local full_wait, paused_wait = nil, nil
local names, limits = {}, {}
-- A number that may send again at `at_ms`: the claim waits for the first such.
local function paused_until(at_ms)
  local wait = (at_ms - now_ms) * 1000
  paused_wait = math.min(paused_wait or wait, wait)
end
local position = 0
for name, rate in string.gmatch(ARGV[5], '([^,]+)=(%d+)') do
  position = position + 1
  local limit = tonumber(rate)
  names[position], limits[position] = name, limit
  local list, sum_key = KEYS[1 + 2 * position], KEYS[2 + 2 * position]
  local state = redis.call('HMGET', KEYS[2], 'paused' .. ':' .. name, 'probe' .. ':' .. name)
  local pause_end, probe = tonumber(state[1] or '0'), state[2]
  local room = 0
  local probing = 0
  if pause_end > now_ms then
    paused_until(pause_end)
  elseif probe and tonumber(probe) > now_ms then
    -- A probe is out: wait for its receipt (or for it to be given up).
    paused_until(tonumber(probe))
  else
    if limit > 0 then
      local sum = window_sum(list, sum_key)
      redis.call('SET', sum_key, sum, 'PX', keep_ms)
      room = limit - sum
      if room <= 0 then
        local wait = entry_time(redis.call('LINDEX', list, 0)) + window - now
        full_wait = math.min(full_wait or wait, wait)
      end
    else
      room = wanted
    end
    if probe then
      room = math.min(room, probe_size)
      probing = 1
    end
  end
  if room > best_room then
    best, best_room, best_probe = position, room, probing
  end
end

if best == 0 then
  if full_wait then
    return {'wait', string.format('%.0f', math.min(full_wait, paused_wait or full_wait)), 'messages', 0}
  end
  return {'wait', string.format('%.0f', paused_wait or 1000000), 'paused', 0}
end

local granted = math.min(wanted, best_room)
if limits[best] > 0 then
  local list, sum_key = KEYS[1 + 2 * best], KEYS[2 + 2 * best]
  redis.call('RPUSH', list, string.format('%.0f', now) .. ':' .. granted)
  redis.call('INCRBY', sum_key, granted)
  redis.call('PEXPIRE', sum_key, keep_ms)
  redis.call('PEXPIRE', list, keep_ms)
end
if best_probe == 1 then
  redis.call('HSET', KEYS[2], 'probe' .. ':' .. names[best], now_ms + probe_wait_ms)
end

if interval > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX',
    math.ceil(interval / 1000) + 1000)
end
return {'granted', granted, tostring(best), best_probe}
