"use strict";
// The seed's app screen: phone -> Send code -> code -> Verify -> signed in -> Log out.
// It uses only this API; the tokens stay in this tab's sessionStorage.

const $ = (id) => document.getElementById(id);
const STEPS = ["step-phone", "step-code", "step-signed-in"];
const SESSION_KEY = "otp-gateway-session";
const timers = {};
let send = null; // { phone, requestId } of the code being entered

function show(step) {
  for (const id of STEPS) $(id).hidden = id !== step;
}

function say(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

function clearMessages() {
  stop("wait");
  say("error", "");
  say("notice", "");
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
    case "CODE_REQUIRED":
      return "Enter the code you received on WhatsApp.";
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
  }
  return data.message || "Something went wrong (HTTP " + result.status + "). Try again.";
}

// A refusal that names a wait: say so, count it down, and keep `button` off meanwhile.
function waitThenRetry(result, button, what) {
  const reason =
    result.status === 503 ? "The service is busy." : "Too many requests.";
  button.disabled = true;
  countdown(
    "wait",
    result.retryAfter,
    (left) => say("error", reason + " Wait " + plural(left, "second", "seconds") + " before " + what + "."),
    () => {
      say("error", "");
      button.disabled = false;
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

async function sendCode(phone, button) {
  clearMessages();
  button.disabled = true;
  const result = await call("POST", "/api/auth/send-otp", { phone });
  button.disabled = false;
  if (result.status !== 202) {
    refused(result, button, "asking for another code");
    return;
  }
  const sent = result.data;
  send = { phone: sent.phone, requestId: sent.requestId };
  $("sent-to").textContent =
    "We sent a code to +" + sent.phone + " on WhatsApp. It expires in " + sent.expiresIn + ".";
  show("step-code");
  $("code").value = "";
  $("code").focus();
  const resend = $("resend");
  resend.disabled = true;
  countdown(
    "resend",
    sent.resendAfterSeconds || 0,
    (left) => (resend.textContent = "Resend code in " + left + " s"),
    () => {
      resend.textContent = "Resend code";
      resend.disabled = false;
    },
  );
  watchDelivery(sent.requestId);
}

const DELIVERY = {
  queued: "Waiting to be sent…",
  sending: "Sending to WhatsApp…",
  sent: "Sent to WhatsApp.",
  delivered: "Delivered to your phone.",
  read: "Read on your phone.",
  expired: "The code expired before it could be sent. Ask for a new one.",
};

// Shows what WhatsApp did with the code, until it is read or can no longer arrive.
function watchDelivery(requestId) {
  stop("delivery");
  say("delivery", "");
  const poll = async () => {
    if (!send || send.requestId !== requestId) return stop("delivery");
    const result = await call("GET", "/api/auth/otp-status/" + encodeURIComponent(requestId));
    if (result.status !== 200 || !send || send.requestId !== requestId) return;
    const status = result.data.status;
    const text =
      status === "failed"
        ? "WhatsApp could not deliver the code" +
          (result.data.reason ? " (" + result.data.reason + ")" : "") +
          ". Ask for a new one."
        : DELIVERY[status] || "";
    say("delivery", text);
    if (["read", "failed", "expired"].includes(status)) stop("delivery");
  };
  poll();
  timers.delivery = setInterval(poll, 1500);
}

async function verify(code, button) {
  clearMessages();
  button.disabled = true;
  const result = await call("POST", "/api/auth/verify-otp", {
    phone: send.phone,
    code,
    requestId: send.requestId,
  });
  button.disabled = false;
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
  if (me.status === 401 && session.refreshToken) {
    const refreshed = await call("POST", "/api/auth/refresh", { refreshToken: session.refreshToken });
    if (refreshed.status === 200) {
      saveSession({ token: refreshed.data.token, refreshToken: refreshed.data.refreshToken });
      me = await call("GET", "/api/auth/me", undefined, refreshed.data.token);
    }
  }
  if (me.status === 200) return showUser(me.data.user, welcome || "Signed in.");
  forgetSession();
  show("step-phone");
  say("error", describe(me));
}

async function logout(button) {
  clearMessages();
  const session = loadSession();
  button.disabled = true;
  const result = session ? await call("POST", "/api/auth/logout", undefined, session.token) : { status: 204 };
  button.disabled = false;
  // A session that already ended (401) is as good as logged out.
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
  sendCode(phone, $("send"));
});

$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = $("code").value.replace(/\s+/g, "");
  if (!code) return say("error", "Enter the code you received on WhatsApp.");
  verify(code, $("verify"));
});

$("resend").addEventListener("click", () => sendCode(send ? send.phone : $("phone").value.trim(), $("resend")));

$("change-phone").addEventListener("click", () => {
  leaveCodeStep();
  clearMessages();
  show("step-phone");
  $("phone").focus();
});

$("logout").addEventListener("click", () => logout($("logout")));

resume();
