"use strict";
// The seed's app screen: phone -> Send code -> code -> Verify -> signed in -> Log out.
// It uses only this API; the tokens stay in this tab's sessionStorage.

const $ = (id) => document.getElementById(id);
const STEPS = ["step-phone", "step-code", "step-signed-in"];
const SESSION_KEY = "otp-gateway-session";
const timers = {};
let send = null; // { phone, requestId } of the code being entered
let waiting = null; // the button a refusal's countdown holds off
// Moves on with every step change; an answer that comes back to a step the user has
// left is dropped.
let generation = 0;
// The human check's widget script (CAPTCHA_SCRIPT_URL), when the server has one.
const CAPTCHA_SCRIPT = document.querySelector("main").dataset.captchaScript || "";
let lastCheck = null; // the { provider, siteKey } the server last asked a check with

function show(step) {
  generation += 1;
  for (const id of STEPS) $(id).hidden = id !== step;
  $("human-check").hidden = true;
}

function say(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

function clearMessages() {
  stopWaiting();
  say("error", "");
  say("notice", "");
}

function stopWaiting() {
  stop("wait");
  if (waiting) waiting.disabled = false;
  waiting = null;
}

function stop(name) {
  clearInterval(timers[name]);
  delete timers[name];
}

// Calls render(secondsLeft) now and as the seconds pass, then done() at zero.
function countdown(name, seconds, render, done) {
  stop(name);
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      stop(name);
      done();
    } else {
      render(left);
    }
  };
  tick();
  if (seconds > 0) timers[name] = setInterval(tick, 250);
}

async function call(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { network: true };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
  }
  const retryAfter =
    Number(response.headers.get("retry-after")) || (data && data.retryAfterSeconds) || 0;
  return { status: response.status, data, retryAfter };
}

function plural(n, one, many) {
  return n + " " + (n === 1 ? one : many);
}

// Every error of this page's calls, in words.
function describe(result) {
  if (result.network) return "Cannot reach the server. Check your connection and try again.";
  const data = result.data || {};
  switch (data.code) {
    case "PHONE_REQUIRED":
      return "Enter your phone number.";
    case "PHONE_INVALID":
      return "That is not a phone number we can send to. Include the country code, e.g. +91 98765 43210.";
    case "PHONE_NOT_ALLOWED":
      return "Codes cannot be sent to numbers in this country.";
    case "CHANNEL_NOT_ALLOWED":
      return "Codes cannot be sent by SMS to numbers in this country.";
    case "CODE_REQUIRED":
      return "Enter the code you received.";
    case "OTP_INVALID": {
      const left = data.attemptsRemaining;
      if (left === 0) return "That code is wrong, and that was the last attempt. Ask for a new code.";
      return "That code is wrong. " + plural(left, "attempt", "attempts") + " remaining.";
    }
    case "TOO_MANY_ATTEMPTS":
      return "Too many wrong codes: this code no longer works. Ask for a new code.";
    case "OTP_EXPIRED":
      return "This code has expired. Ask for a new one.";
    case "OTP_NOT_FOUND":
      return "There is no code waiting for this number. Ask for a new one.";
    case "UNAUTHORIZED":
      return "Your session has ended. Sign in again.";
    case "UNAVAILABLE":
      return "The service is unavailable right now. Try again in a moment.";
    case "INTERNAL":
      return "Something went wrong on our side. Try again.";
    case "CAPTCHA_REQUIRED":
      return "Complete the check below to get your code.";
    case "CAPTCHA_INVALID":
      return "The check did not go through. Please do it again.";
  }
  return data.message || "Something went wrong (HTTP " + result.status + "). Try again.";
}

// A refusal that names a wait: say so, count it down, and keep `button` off meanwhile.
function waitThenRetry(result, button, what) {
  const reason =
    result.status === 503 ? "The service is busy." : "Too many requests.";
  stopWaiting();
  waiting = button;
  button.disabled = true;
  countdown(
    "wait",
    result.retryAfter,
    (left) => say("error", reason + " Wait " + plural(left, "second", "seconds") + " before " + what + "."),
    () => {
      say("error", "");
      stopWaiting();
    },
  );
}

function refused(result, button, what) {
  if ((result.status === 429 && result.data && result.data.code === "RATE_LIMITED") ||
      (result.status === 503 && result.retryAfter > 0)) {
    waitThenRetry(result, button, what);
  } else {
    say("error", describe(result));
  }
}

// Asks for a code on `channel` ("whatsapp", or "sms" when the user asks for SMS), with
// the human check's token when the server asked for one.
async function sendCode(phone, button, channel, captchaToken) {
  clearMessages();
  $("human-check").hidden = true;
  $("human-check").replaceChildren();
  button.disabled = true;
  const asked = generation;
  const body = channel === "sms" ? { phone, channel } : { phone };
  if (captchaToken) body.captchaToken = captchaToken;
  const result = await call("POST", "/api/auth/send-otp", body);
  button.disabled = false;
  if (asked !== generation) return; // the user moved on meanwhile
  const code = result.data && result.data.code;
  const pending = result.data && result.data.codePending && button === $("send");
  if (result.status === 429 && pending) {
    // A code for this number is on its way or there already (maybe asked for by someone
    // else): let the user enter it rather than wait.
    enterPendingCode(phone, result.retryAfter);
    return;
  }
  if (result.status === 403 && (code === "CAPTCHA_REQUIRED" || code === "CAPTCHA_INVALID")) {
    if (code === "CAPTCHA_REQUIRED") lastCheck = result.data.captcha;
    // With a code pending, the user may enter it; the check is for another one.
    if (pending) enterPendingCode(phone, 0);
    const again = pending ? $("resend") : button;
    askHumanCheck(describe(result), (token) => sendCode(phone, again, channel, token));
    return;
  }
  if (result.status !== 202) {
    refused(result, button, "asking for another code");
    return;
  }
  const sent = result.data;
  send = { phone: sent.phone, requestId: sent.requestId, smsAvailable: sent.smsAvailable };
  $("sent-to").textContent =
    "We sent a code to +" + sent.phone + (sent.channel === "sms" ? " by SMS" : " on WhatsApp") +
    ". It expires in " + sent.expiresIn + ".";
  show("step-code");
  $("code").value = "";
  $("code").focus();
  const resend = $("resend");
  // SMS is offered only where the server allows it, and not again once the code went so.
  const bySms = $("by-sms");
  bySms.hidden = !sent.smsAvailable || sent.channel === "sms";
  resend.disabled = true;
  bySms.disabled = true;
  countdown(
    "resend",
    sent.resendAfterSeconds || 0,
    (left) => (resend.textContent = "Resend code in " + left + " s"),
    () => {
      resend.textContent = "Resend code";
      resend.disabled = false;
      bySms.disabled = false;
    },
  );
  watchDelivery(sent.requestId, sent.expiresInSeconds);
}

// Shows the provider's widget (loading its script once) and calls `retry` with the
// token it gives.
async function askHumanCheck(why, retry) {
  say("notice", why);
  const box = $("human-check");
  const asked = generation;
  let widgets;
  try {
    widgets = await captchaWidgets();
  } catch (e) {
    if (asked === generation) say("error", "The check could not be loaded. Try again in a moment.");
    return;
  }
  if (asked !== generation) return; // the user moved on while the script loaded
  const slot = document.createElement("div");
  box.replaceChildren(slot);
  box.hidden = false;
  widgets.render(slot, {
    sitekey: lastCheck.siteKey,
    callback: (token) => {
      if (asked !== generation) return;
      box.hidden = true;
      box.replaceChildren();
      retry(token);
    },
    "error-callback": () => say("error", "The check could not be completed. Try again."),
  });
}

// The provider's widget API (window.turnstile or window.hcaptcha), its script loaded
// on first use only (and once, however many checks are asked for meanwhile).
let widgetsLoading = null;
function captchaWidgets() {
  const name = lastCheck && lastCheck.provider;
  if (!CAPTCHA_SCRIPT || (name !== "turnstile" && name !== "hcaptcha")) {
    return Promise.reject(new Error("no human check here"));
  }
  if (window[name]) return Promise.resolve(window[name]);
  if (widgetsLoading) return widgetsLoading;
  widgetsLoading = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = CAPTCHA_SCRIPT + (CAPTCHA_SCRIPT.includes("?") ? "&" : "?") + "render=explicit";
    script.async = true;
    script.onload = () => (window[name] ? resolve(window[name]) : reject(new Error(name)));
    script.onerror = reject;
    document.head.appendChild(script);
  });
  // A failed load may be tried again on the next check.
  widgetsLoading.catch(() => (widgetsLoading = null));
  return widgetsLoading;
}

// The code step for a code sent a moment ago (no request of this page's to follow):
// the user enters it, or asks again when the countdown ends.
function enterPendingCode(phone, retryAfter) {
  send = { phone, requestId: null, smsAvailable: false };
  $("sent-to").textContent =
    "A code was sent to " + phone + " a moment ago. Enter it, or ask again when the countdown ends.";
  show("step-code");
  say("delivery", "");
  $("by-sms").hidden = true;
  $("code").value = "";
  $("code").focus();
  const resend = $("resend");
  resend.disabled = true;
  countdown(
    "resend",
    retryAfter || 0,
    (left) => (resend.textContent = "Resend code in " + left + " s"),
    () => {
      resend.textContent = "Resend code";
      resend.disabled = false;
    },
  );
}

// What a status says, on the channel of the newest delivery.
function deliveryText(data) {
  const by = data.channel === "sms" ? "by SMS" : "on WhatsApp";
  switch (data.status) {
    case "queued":
      return "Waiting to be sent…";
    case "sending":
      return data.channel === "sms" ? "Sending by SMS…" : "Sending to WhatsApp…";
    case "sent":
      return data.channel === "sms" ? "Sent by SMS." : "Sent to WhatsApp.";
    case "delivered":
      return "Delivered to your phone " + by + ".";
    case "read":
      return "Read on your phone.";
    case "expired":
      return "The code expired before it could be sent. Ask for a new one.";
    case "failed":
      return (data.channel === "sms" ? "The SMS" : "WhatsApp") + " could not deliver the code" +
        (FAILURES[data.failedCode] ? " (" + FAILURES[data.failedCode] + ")" : "") +
        ". Ask for a new one.";
  }
  return "";
}

// The page's own words for the providers' failure codes: a provider's free text
// (WATI's failedDetail) is never shown, since whoever can post receipts writes it.
const FAILURES = {
  131026: "this number cannot receive WhatsApp messages",
  131049: "WhatsApp held the message back",
  130472: "WhatsApp held the message back",
  131047: "the conversation window is closed",
  30003: "the phone is unreachable",
  30005: "the number is unknown",
  30006: "the number cannot receive SMS",
};

// Shows what WhatsApp did with the code, until it is read, can no longer arrive, or
// expires (a phone with read receipts off never reports "read").
function watchDelivery(requestId, expiresInSeconds) {
  stop("delivery");
  say("delivery", "");
  const until = Date.now() + (expiresInSeconds || 300) * 1000;
  let polling = false;
  const poll = async () => {
    if (!send || send.requestId !== requestId || Date.now() > until) return stop("delivery");
    if (polling) return;
    polling = true;
    const result = await call("GET", "/api/auth/otp-status/" + encodeURIComponent(requestId));
    polling = false;
    if (result.status !== 200 || !send || send.requestId !== requestId) return;
    const status = result.data.status;
    // A code WhatsApp could not deliver may come by SMS instead: say so.
    const fellBack = result.data.channel === "sms" && (result.data.deliveries || []).length > 1;
    say("delivery", (fellBack ? "WhatsApp could not deliver it; it comes by SMS. " : "") + deliveryText(result.data));
    // A WhatsApp failure may still be followed by an SMS, where SMS is available.
    const over = status === "failed" && (result.data.channel === "sms" || !send.smsAvailable);
    if (status === "read" || status === "expired" || over) stop("delivery");
  };
  poll();
  timers.delivery = setInterval(poll, 1500);
}

async function verify(code, button) {
  clearMessages();
  button.disabled = true;
  const asked = generation;
  const result = await call("POST", "/api/auth/verify-otp", {
    phone: send.phone,
    code,
    requestId: send.requestId,
  });
  button.disabled = false;
  if (asked !== generation) return; // the user moved on meanwhile
  if (result.status !== 200) {
    refused(result, button, "trying again");
    return;
  }
  saveSession({ token: result.data.token, refreshToken: result.data.refreshToken });
  leaveCodeStep();
  await resume(result.data.isNewUser ? "Welcome! Your account was created." : "Welcome back.");
}

function leaveCodeStep() {
  send = null;
  stop("resend");
  stop("delivery");
}

function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch (e) {
    return null;
  }
}

function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

function when(rfc3339) {
  return rfc3339 ? new Date(rfc3339).toLocaleString() : "—";
}

function showUser(user, welcome) {
  $("welcome").textContent = welcome;
  $("me-phone").textContent = "+" + user.phone;
  $("me-id").textContent = user.id;
  $("me-created").textContent = when(user.createdAt);
  $("me-last-login").textContent = when(user.lastLoginAt);
  show("step-signed-in");
}

// The signed-in view from /me; an expired access token is refreshed once.
async function resume(welcome) {
  const session = loadSession();
  if (!session) return show("step-phone");
  let me = await call("GET", "/api/auth/me", undefined, session.token);
  // Who says the session is over: /me, unless /refresh can still renew it.
  let verdict = me;
  if (me.status === 401) {
    const renewal = await refreshed(session);
    verdict = renewal.result;
    if (renewal.token) me = verdict = await call("GET", "/api/auth/me", undefined, renewal.token);
  }
  if (me.status === 200) return showUser(me.data.user, welcome || "Signed in.");
  show("step-phone");
  // Only a session the server says it no longer knows is forgotten: an outage (a 503
  // from /me or from /refresh) keeps it, and a reload tries again.
  if (verdict.status === 401) forgetSession();
  say("error", describe(verdict));
}

// Renews the access token with the refresh token (and keeps the next refresh token):
// { token, result } with the new token, or { token: null, result } with /refresh's
// answer (a 401 when there is no refresh token to try).
async function refreshed(session) {
  if (!session.refreshToken) return { token: null, result: { status: 401, data: null } };
  const result = await call("POST", "/api/auth/refresh", { refreshToken: session.refreshToken });
  if (result.status !== 200) return { token: null, result };
  saveSession({ token: result.data.token, refreshToken: result.data.refreshToken });
  return { token: result.data.token, result };
}

async function logout(button) {
  clearMessages();
  const session = loadSession();
  button.disabled = true;
  let result = session ? await call("POST", "/api/auth/logout", undefined, session.token) : { status: 204 };
  if (result.status === 401) {
    // The access token expired, but the session may live on: end it with a fresh one.
    const { token } = await refreshed(session);
    if (token) result = await call("POST", "/api/auth/logout", undefined, token);
  }
  button.disabled = false;
  // A 401 now means the session had already ended: as good as logged out.
  if (result.status !== 204 && result.status !== 401) {
    say("error", describe(result));
    return;
  }
  forgetSession();
  show("step-phone");
  say("notice", "You are signed out.");
}

$("phone-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const phone = $("phone").value.trim();
  if (!phone) return say("error", "Enter your phone number.");
  sendCode(phone, $("send"), "whatsapp");
});

$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = $("code").value.replace(/\s+/g, "");
  if (!code) return say("error", "Enter the code you received.");
  verify(code, $("verify"));
});

$("resend").addEventListener("click", () => sendCode(send ? send.phone : $("phone").value.trim(), $("resend")));

$("by-sms").addEventListener("click", () => sendCode(send ? send.phone : $("phone").value.trim(), $("by-sms"), "sms"));

$("change-phone").addEventListener("click", () => {
  leaveCodeStep();
  clearMessages();
  show("step-phone");
  $("phone").focus();
});

$("logout").addEventListener("click", () => logout($("logout")));

resume();
