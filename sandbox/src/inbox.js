'use strict';
// Every caller-given string goes in through textContent or setAttribute, never as HTML:
// phone numbers, and every field of an event posted to the app webhook, come from
// whoever calls the sandbox.

const POLL_MS = 1000;
// A hung sandbox must not stop the polling for good.
const TIMEOUT_MS = 5000;

const conversations = document.getElementById('conversations');
const empty = document.getElementById('empty');
const more = document.getElementById('more');
const liveness = document.getElementById('status');
// Attempts the events panel reads: a page polled every second should stay small.
const APP_EVENTS = 100;
const appEvents = document.getElementById('app-events');
const appEventsEmpty = document.getElementById('app-events-empty');
const appEventsMore = document.getElementById('app-events-more');
const appEventsTable = appEvents.querySelector('table');
const appEventsBody = appEvents.querySelector('tbody');
document.getElementById('app-webhook-url').textContent =
  'APP_WEBHOOK_URL=' + window.location.origin + '/sandbox/app-webhook';

// The body last drawn: redrawing an unchanged inbox would drop a selection in it.
let drawn = null;
// The messages last drawn, so newly arrived ones can be lit up; null before the first
// draw, when nothing is new.
let seen = null;
// The same two for the events panel.
let drawnEvents = null;
let seenAttempts = null;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

function plural(n, one, many) {
  return n + ' ' + (n === 1 ? one : many);
}

function clock(ms) {
  const at = new Date(ms);
  const time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return at.toDateString() === new Date().toDateString()
    ? time
    : at.toLocaleDateString() + ' ' + time;
}

function key(phone, message) {
  return [phone, message.channel, message.callId, message.localMessageId, message.sid, message.code]
    .join('\u0000');
}

// The message as the phone shows it: the template's body with the code set apart, its
// footer, and its "Copy code" button.
function body(message, code) {
  const text = String(message.text || '');
  const at = code ? text.indexOf(code) : -1;
  if (at < 0) {
    return el('p', {}, text);
  }
  return el('p', {},
    text.slice(0, at),
    el('code', { 'data-code': code }, code),
    text.slice(at + code.length));
}

function seenOrNew(phone, message, item, now) {
  now.add(key(phone, message));
  if (seen && !seen.has(key(phone, message))) {
    item.classList.add('new');
  }
  return item;
}

// An SMS as the phone's messages app shows it: its body as sent, under an "SMS" label
// with its sender, in a bubble of its own look.
function smsBubble(phone, message, now) {
  const from = message.from ? String(message.from) : '';
  const item = el('li', {
    class: 'bubble sms',
    'data-channel': 'sms',
    'data-sid': message.sid || '',
    title: 'SMS ' + (message.sid || '') + (from ? ', from ' + from : ''),
  },
    el('span', { class: 'label' }, 'SMS', from ? el('span', { class: 'from' }, from) : ''),
    el('p', { 'data-sms-body': '' }, String(message.text || '')),
    el('time', { datetime: new Date(message.receivedAtMs).toISOString() }, clock(message.receivedAtMs)));
  return seenOrNew(phone, message, item, now);
}

function bubble(phone, message, now) {
  if (message.channel === 'sms') {
    return smsBubble(phone, message, now);
  }
  const code = String(message.code);
  const item = el('li', {
    class: 'bubble',
    'data-channel': 'whatsapp',
    'data-call-id': message.callId,
    'data-template': message.template || '',
    title: 'call ' + message.callId +
      (message.template ? ', template ' + message.template : '') +
      (message.localMessageId ? ', local message id ' + message.localMessageId : ', v1') +
      (message.broadcastName ? ', broadcast ' + message.broadcastName : ''),
  }, body(message, code));
  if (message.footer) {
    item.append(el('small', { class: 'footer' }, String(message.footer)));
  }
  item.append(el('time', { datetime: new Date(message.receivedAtMs).toISOString() }, clock(message.receivedAtMs)));
  if (message.button) {
    item.append(el('button', { type: 'button', 'data-copy': code }, String(message.button)));
  }
  return seenOrNew(phone, message, item, now);
}

function conversation(entry, now) {
  const messages = entry.messages || [];
  const last = messages[messages.length - 1];
  const list = el('ol', {}, ...messages.map((m) => bubble(entry.phone, m, now)));
  const chat = el('section', { class: 'chat', 'data-phone': entry.phone },
    el('header', {},
      el('span', { class: 'avatar', 'aria-hidden': 'true' }, '+'),
      el('div', {},
        el('h2', {}, '+' + entry.phone),
        el('p', {}, plural(entry.totalMessages, 'message', 'messages') +
          (last ? ', last at ' + clock(last.receivedAtMs) : '')))));
  const hidden = entry.totalMessages - messages.length;
  if (hidden > 0) {
    chat.append(el('p', { class: 'earlier' }, plural(hidden, 'earlier message', 'earlier messages') + ' not shown'));
  }
  chat.append(list);
  return chat;
}

function draw(inbox) {
  const phones = inbox.phones || [];
  const now = new Set();
  conversations.replaceChildren(...phones.map((entry) => conversation(entry, now)));
  // As a chat opens: scrolled to its latest message.
  for (const list of conversations.querySelectorAll('ol')) {
    list.scrollTop = list.scrollHeight;
  }
  seen = now;
  empty.hidden = phones.length > 0;
  more.hidden = inbox.totalPhones <= phones.length;
  more.textContent = 'Showing the ' + phones.length + ' phones messaged last, of ' + inbox.totalPhones + '.';
}

// The attempts of each webhook-id (an id-less attempt on its own), the event with the
// latest attempt first.
function byWebhookId(attempts) {
  const groups = new Map();
  for (const attempt of attempts) {
    const id = attempt.webhookId ? String(attempt.webhookId) : '#' + attempt.seq;
    if (!groups.has(id)) {
      groups.set(id, []);
    }
    groups.get(id).push(attempt);
  }
  const latest = (group) => group[group.length - 1].seq;
  return [...groups.entries()].sort((a, b) => latest(b[1]) - latest(a[1]));
}

// A field of the event's data, under its camelCase or snake_case name.
function field(data, camel, snake) {
  if (!data || typeof data !== 'object') {
    return null;
  }
  const value = data[camel] !== undefined ? data[camel] : data[snake];
  return value === undefined || value === null || value === '' ? null : String(value);
}

function about(data) {
  const parts = [
    ['request', field(data, 'requestId', 'request_id')],
    ['phone', field(data, 'phone', 'phone_number')],
    ['user', field(data, 'userId', 'user_id')],
  ].filter(([, value]) => value !== null);
  if (parts.length === 0) {
    return el('td', { class: 'muted' }, '–');
  }
  return el('td', {}, ...parts.map(([label, value]) =>
    el('span', { class: 'fact' }, el('span', { class: 'muted' }, label + ' '), value)));
}

function signature(attempt) {
  if (attempt.verified) {
    const by = (attempt.matched || [])
      .map((m) => 'signature ' + (m.position + 1) + ' under secret ' + (m.secret + 1))
      .join(', ');
    return el('td', { class: 'ok', title: by }, 'verified');
  }
  return el('td', { class: 'bad', title: attempt.webhookSignature || 'no webhook-signature' },
    String(attempt.reason || 'not verified'));
}

function answered(attempt) {
  let text = String(attempt.status);
  if (attempt.retryAfter !== null && attempt.retryAfter !== undefined) {
    text += ', Retry-After ' + attempt.retryAfter + ' s';
  }
  if (attempt.callerLeft) {
    text += ', sender left during a ' + attempt.hangMs + ' ms hang';
  } else if (attempt.answeredAtMs === null || attempt.answeredAtMs === undefined) {
    text += attempt.hangMs ? ', held for ' + attempt.hangMs + ' ms' : '';
  } else if (attempt.hangMs) {
    text += ' after ' + (attempt.answeredAtMs - attempt.receivedAtMs) + ' ms';
  }
  return el('td', {}, text);
}

// One event: its latest attempt, and the status answered to each attempt shown.
function eventRow(id, attempts, now) {
  const last = attempts[attempts.length - 1];
  const statuses = attempts.map((a) => String(a.status)).join(' → ');
  const earlier = last.attempt > attempts.length ? '… → ' : '';
  const row = el('tr', {
    'data-webhook-id': id,
    'data-verified': last.verified ? 'true' : 'false',
    title: 'webhook-id ' + (last.webhookId || '(none)') +
      ', webhook-timestamp ' + (last.webhookTimestamp || '(none)') +
      (last.timestamp !== null && last.timestamp !== undefined ? ', event at ' + JSON.stringify(last.timestamp) : ''),
  },
    el('td', {}, el('time', { datetime: new Date(last.receivedAtMs).toISOString() }, clock(last.receivedAtMs))),
    el('td', { title: JSON.stringify(last.data === undefined ? null : last.data) },
      last.type ? el('code', {}, String(last.type)) : el('span', { class: 'muted' }, last.unparsedBody ? 'not JSON' : '(no type)')),
    about(last.data),
    signature(last),
    answered(last),
    el('td', {}, el('span', { 'data-attempts': last.attempt },
      last.attempt === 1 ? '1' : last.attempt + ': ' + earlier + statuses)));
  const key = id + '\u0000' + last.seq;
  now.add(key);
  if (seenAttempts && !seenAttempts.has(key)) {
    row.classList.add('new');
  }
  return row;
}

function drawEvents(answer) {
  const attempts = answer.events || [];
  const now = new Set();
  const groups = byWebhookId(attempts);
  appEventsBody.replaceChildren(...groups.map(([id, group]) => eventRow(id, group, now)));
  seenAttempts = now;
  appEventsTable.hidden = attempts.length === 0;
  appEventsEmpty.hidden = attempts.length > 0;
  appEventsMore.hidden = answer.total <= attempts.length;
  appEventsMore.textContent = 'Showing the last ' + attempts.length + ' attempts, of ' + answer.total + '.';
}

function live(ok, why) {
  liveness.className = ok ? 'live' : 'down';
  liveness.textContent = ok
    ? 'Live, checked ' + clock(Date.now())
    : 'Cannot reach the sandbox (' + why + '); retrying';
}

async function get(path, signal) {
  const response = await fetch(path, { cache: 'no-store', signal });
  if (!response.ok) {
    throw new Error('HTTP ' + response.status);
  }
  return response.text();
}

async function poll() {
  try {
    const signal = AbortSignal.timeout ? AbortSignal.timeout(TIMEOUT_MS) : undefined;
    const [body, events] = await Promise.all([
      get('inbox', signal),
      get('app-events?latest=' + APP_EVENTS, signal),
    ]);
    if (body !== drawn) {
      draw(JSON.parse(body));
      drawn = body;
    }
    if (events !== drawnEvents) {
      drawEvents(JSON.parse(events));
      drawnEvents = events;
    }
    live(true);
  } catch (error) {
    live(false, error && error.message ? error.message : String(error));
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function select(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

conversations.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) {
    return;
  }
  const code = button.closest('li').querySelector('[data-code]');
  const label = button.textContent;
  const done = (shown) => {
    button.textContent = shown;
    setTimeout(() => { button.textContent = label; }, 1500);
  };
  // The clipboard is there only on localhost or https; elsewhere the code is selected
  // for Ctrl+C.
  const fallback = () => { select(code); done('Selected: press Ctrl+C'); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(button.dataset.copy).then(() => done('Copied'), fallback);
  } else {
    fallback();
  }
});

poll();
