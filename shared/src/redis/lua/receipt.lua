-- Applies a delivery receipt (WATI's, or a Twilio status callback) to one delivery of a send. The status only moves forward, and what is
-- known is kept: a repeat changes nothing; a read before its delivered implies both
-- (delivered at the read's time, until an earlier delivery time arrives). A failure
-- receipt ends a send not yet delivered: status 'failed' with WhatsApp's code, and the
-- code deleted (verify then answers "not found") unless another send of the same code
-- was delivered, or (for a WhatsApp send) an SMS carries it.
-- With ARGV[6] 'keep', a failure leaves the code for the caller, which sends it by SMS
-- or retires it itself; the reply says when it would have been deleted. With 'reroute'
-- (Meta refused the message for its sending number's trouble), a WhatsApp send recorded
-- sent whose code is still the phone's, unexpired and not yet received, rerouted fewer
-- than ARGV[7] times, is not over: its status goes back to 'queued' and its delivered mark is
-- dropped, so that its job, published again, goes out from another number; otherwise
-- the failure is kept as with 'keep'.
-- KEYS: 1 the delivery's status (a request's first, or its SMS fallback's), 2 code
--       record of the phone in ARGV[5], 3 the delivery's delivered mark
-- ARGV: 1 event: 'sent', 'delivered', 'read' or 'failed'; 2 when it happened (Unix ms,
--       stored as given: a Lua number of 14 digits or more would be written as 1e+14);
--       3 failed code, 4 reason (for 'failed'), 5 the phone KEYS[2] is for,
--       6 'delete', 'keep' or 'reroute': what a failure does with a code no send of which
--       arrived, 7 most reroutes of one send, 8 WhatsApp's id of the message ('' when
--       unknown): a repeat of the refusal a send was rerouted for changes nothing
-- Returns {outcome, accepted_at, delivered_at, first_delivery, first_read, left, sender,
-- sent_at, probe, locales}:
-- outcome 'unknown' (no such send), 'other_phone' (the send is for another phone than
-- ARGV[5]: nothing done, call again with its own), 'unchanged' (nothing changed) or
-- 'applied'; the times in Unix ms (0 if unknown); first_* 1 when this receipt made the
-- send delivered or read; left the code's id when a failure kept a code it would have
-- deleted, or rerouted its send ('' otherwise); outcome 'rerouted' for a rerouted send;
-- sender, sent_at and probe the number the message went from, when (Unix ms) and whether
-- as a probe ('' and 0 when unknown); locales the send's languages.
if ARGV[6] ~= 'delete' and ARGV[6] ~= 'keep' and ARGV[6] ~= 'reroute' then
  return redis.error_reply('receipt.lua: unknown way to treat the code ' .. ARGV[6])
end
local now = {{now_ms}}
local RANK = {{state.ranks}}
local function rank(name)
  return RANK[name] or 0
end
local rec = redis.call('HMGET', KEYS[1], {{status.state}}, {{status.code_id}},
  {{status.accepted_at}}, {{status.delivered_at}}, {{status.read_at}}, {{status.phone}},
  {{status.channel}}, {{status.sender}}, {{status.sent_at}}, {{status.probe}},
  {{status.locales}}, {{status.reroutes}}, {{status.refused_message}})
local state, code_id = rec[1], rec[2]
if not state then
  return {'unknown', 0, 0, 0, 0, '', '', 0, 0, ''}
end
if rec[6] and rec[6] ~= ARGV[5] then
  return {'other_phone', 0, 0, 0, 0, '', '', 0, 0, ''}
end
local sender, sent_at, probe, locales = rec[8] or '', tonumber(rec[9]) or 0,
  tonumber(rec[10]) or 0, rec[11] or ''
local function reply(outcome, accepted, delivered, first_delivery, first_read, left)
  return {outcome, accepted, delivered, first_delivery, first_read, left, sender, sent_at,
    probe, locales}
end
local event, at = ARGV[1], tonumber(ARGV[2])
local delivered_at = tonumber(rec[4])
local changed, first_delivery, first_read, left = false, 0, 0, ''

local function ours()
  return code_id and redis.call('HGET', KEYS[2], {{code.code_id}}) == code_id
end

if event == 'sent' then
  if rank(state) < RANK[{{state.sent}}] then
    redis.call('HSET', KEYS[1], {{status.state}}, {{state.sent}})
    changed = true
  end
elseif event == 'delivered' or event == 'read' then
  if not delivered_at then
    first_delivery = 1
  end
  if not delivered_at or at < delivered_at then
    delivered_at = at
    redis.call('HSET', KEYS[1], {{status.delivered_at}}, ARGV[2])
    changed = true
  end
  local target = {{state.delivered}}
  if event == 'read' then
    target = {{state.read}}
    if not rec[5] then
      redis.call('HSET', KEYS[1], {{status.read_at}}, ARGV[2])
      first_read, changed = 1, true
    end
  end
  if rank(state) < RANK[target] then
    redis.call('HSET', KEYS[1], {{status.state}}, target)
    changed = true
  end
  if ours() then
    redis.call('HSET', KEYS[2], {{code.received}}, 1)
  end
elseif event == 'failed' and ARGV[8] ~= '' and ARGV[8] == rec[13] then
  -- The refusal this send was rerouted for, again: its new message is another. While
  -- the send still waits to go again, the caller publishes its job again (its first
  -- publishing may have failed; a copy too many is sent once).
  if state == {{state.queued}} and code_id then
    return reply('rerouted', tonumber(rec[3]) or 0, 0, 0, 0, code_id)
  end
  changed = false
elseif event == 'failed' then
  local rec_code = code_id and redis.call('HMGET', KEYS[2], {{code.code_id}},
    {{code.expires_at}}, {{code.received}}) or {}
  -- Only a send the worker has recorded sent (its delivered mark is set; a 'sent'
  -- receipt is not enough): one it is still recording would be marked delivered after
  -- this, and its copy dropped.
  if ARGV[6] == 'reroute' and rec[7] ~= {{channel.sms}}
    and rank(state) < RANK[{{state.delivered}}] and state ~= {{state.failed}}
    and redis.call('EXISTS', KEYS[3]) == 1
    and rec_code[1] == code_id and tonumber(rec_code[2] or '0') > now and not rec_code[3]
    and (tonumber(rec[12]) or 0) < tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[1], {{status.state}}, {{state.queued}}, {{status.failed_code}},
      ARGV[3], {{status.updated_at}}, now)
    redis.call('HINCRBY', KEYS[1], {{status.reroutes}}, 1)
    if ARGV[8] ~= '' then
      redis.call('HSET', KEYS[1], {{status.refused_message}}, ARGV[8])
    end
    redis.call('DEL', KEYS[3])
    return reply('rerouted', tonumber(rec[3]) or 0, 0, 0, 0, code_id)
  end
  -- A failure outranks the worker's own outcomes (it is what WhatsApp did), not a
  -- delivery, and not itself.
  if rank(state) < RANK[{{state.delivered}}] and state ~= {{state.failed}} then
    redis.call('HSET', KEYS[1], {{status.state}}, {{state.failed}},
      {{status.failed_code}}, ARGV[3], {{status.reason}}, ARGV[4])
    changed = true
    -- A WhatsApp failure leaves a code an SMS carries to that SMS.
    local carried = rec[7] ~= {{channel.sms}}
      and redis.call('HEXISTS', KEYS[2], {{code.fallback}}) == 1
    if ours() and redis.call('HEXISTS', KEYS[2], {{code.received}}) == 0 and not carried then
      if ARGV[6] ~= 'delete' then
        left = code_id
      else
        redis.call('DEL', KEYS[2])
      end
    end
  end
end

if not changed then
  return reply('unchanged', tonumber(rec[3]) or 0, delivered_at or 0, 0, 0, '')
end
redis.call('HSET', KEYS[1], {{status.updated_at}}, now)
return reply('applied', tonumber(rec[3]) or 0, delivered_at or 0, first_delivery, first_read,
  left)
