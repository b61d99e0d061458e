// Walks the login page in Debian's chromium against a running pipeline: phone, send,
// the code from the sandbox's inbox page, a wrong code (attempts left), the right
// code, signed in from /me, reload, log out, and a refused send counting down.
// Run by e2e/tests/login_page_browser.rs, which starts the pipeline and passes:
//   API_URL, SANDBOX_URL, PHONE (digits), SCREENSHOTS (a directory), CHROMIUM (optional)
import assert from "node:assert/strict";
import { TIMEOUT, launch, settings, watch } from "./walk.mjs";

const { API_URL, SANDBOX_URL, PHONE, SCREENSHOTS } = settings(["API_URL", "SANDBOX_URL", "PHONE", "SCREENSHOTS"]);

const browser = await launch();

// The number in the first "<n> s" or "<n> second(s)" of a text.
const secondsIn = (text) => {
  const match = /(\d+) s(?:econds?)?\b/.exec(text ?? "");
  return match ? Number(match[1]) : null;
};

// Waits until `selector`'s countdown shows fewer seconds than it does now.
async function countsDown(page, selector) {
  const start = secondsIn(await page.locator(selector).textContent());
  assert.ok(start !== null && start > 1, `${selector} shows a countdown, got ${start}`);
  await page.waitForFunction(
    ([sel, from]) => {
      const match = /(\d+) s(?:econds?)?\b/.exec(document.querySelector(sel)?.textContent ?? "");
      return match && Number(match[1]) < from;
    },
    [selector, start],
    { timeout: 5_000 },
  );
}

try {
  const context = await browser.newContext({ viewport: { width: 520, height: 760 } });
  context.setDefaultTimeout(TIMEOUT);
  // Script errors and CSP violations (reported as console errors) on either page (the
  // login page, the sandbox's inbox) fail the walk.
  const problems = [];
  const page = await context.newPage();
  watch(page, problems, "login page");
  const shot = (name) => page.screenshot({ path: `${SCREENSHOTS}/${name}.png` });

  console.log("1. the phone step");
  await page.goto(`${API_URL}/`);
  await page.locator("#step-phone").waitFor({ state: "visible" });
  assert.equal(
    await page.locator("#inbox-link").getAttribute("href"),
    `${SANDBOX_URL}/sandbox/`,
  );
  await page.locator("#phone").fill(`+${PHONE}`);
  await shot("1-phone");

  console.log("2. send: the code step, whose resend button counts down");
  await page.click("#send");
  await page.locator("#step-code").waitFor({ state: "visible" });
  const code = page.locator("#code");
  assert.equal(await code.getAttribute("autocomplete"), "one-time-code");
  assert.equal(await code.getAttribute("inputmode"), "numeric");
  assert.ok(await page.locator("#resend").isDisabled(), "resend waits for the cooldown");
  await countsDown(page, "#resend");
  assert.match(await page.locator("#sent-to").textContent(), new RegExp(`\\+${PHONE}`));

  console.log("3. the code, read from the sandbox's inbox page");
  const inbox = await context.newPage();
  watch(inbox, problems, "sandbox inbox");
  await inbox.goto(`${SANDBOX_URL}/sandbox/`);
  const latest = inbox.locator(`[data-phone="${PHONE}"] li:last-child [data-code]`);
  await latest.waitFor();
  const right = await latest.getAttribute("data-code");
  assert.match(right, /^\d{4,10}$/);
  await inbox.screenshot({ path: `${SCREENSHOTS}/3-sandbox-inbox.png` });
  await inbox.close();
  await page.locator("#delivery").filter({ hasText: /Sent|Delivered|Read/ }).waitFor();
  await shot("2-code");

  console.log("2b. asking again for the same number at once: the code step, to enter the code on its way");
  await page.click("#change-phone");
  await page.locator("#phone").fill(`+${PHONE}`);
  await page.click("#send");
  await page.locator("#sent-to").filter({ hasText: /a moment ago/ }).waitFor();
  assert.ok(await page.locator("#step-code").isVisible(), "the code step, not an error");
  assert.ok(await page.locator("#error").isHidden(), "no error");

  console.log("4. a wrong code shows the attempts left");
  const wrong = right.slice(0, -1) + String((Number(right.at(-1)) + 1) % 10);
  await code.fill(wrong);
  await page.click("#verify");
  await page.locator("#error").filter({ hasText: "That code is wrong. 2 attempts remaining." }).waitFor();
  await shot("4-wrong-code");

  console.log("5. the right code signs in; the page shows /me");
  await code.fill(right);
  await page.click("#verify");
  await page.locator("#step-signed-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#me-phone").textContent(), `+${PHONE}`);
  assert.match(await page.locator("#me-id").textContent(), /^[0-9a-f-]{36}$/);
  assert.ok((await page.locator("#error").isHidden()), "no error is left showing");
  await shot("5-signed-in");

  assert.match(await page.locator("#me-last-login").textContent(), /\d/);

  console.log("6. a reload stays signed in, through the refresh token once the access token fails");
  const session = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("otp-gateway-session")));
  const before = await session();
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem("otp-gateway-session"));
    sessionStorage.setItem("otp-gateway-session", JSON.stringify({ ...s, token: "not-a-token" }));
  });
  await page.reload();
  await page.locator("#step-signed-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#welcome").textContent(), "Signed in.");
  const rotated = await session();
  assert.notEqual(rotated.refreshToken, before.refreshToken, "the refresh token was rotated");
  assert.notEqual(rotated.token, "not-a-token");

  console.log("7. log out, with an access token that no longer works: the session still ends");
  const signedIn = await session();
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem("otp-gateway-session"));
    sessionStorage.setItem("otp-gateway-session", JSON.stringify({ ...s, token: "expired" }));
  });
  await page.click("#logout");
  await page.locator("#step-phone").waitFor({ state: "visible" });
  await page.locator("#notice").filter({ hasText: "You are signed out." }).waitFor();
  const after = await page.evaluate(async ({ token, refreshToken }) => {
    const me = await fetch("/api/auth/me", { headers: { authorization: `Bearer ${token}` } });
    const refresh = await fetch("/api/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refreshToken }),
    });
    return [me.status, refresh.status];
  }, signedIn);
  assert.deepEqual(after, [401, 401], "the logged-out session's tokens no longer work");

  console.log("8. asking again at once: a wait in words, counting down");
  await page.locator("#phone").fill(PHONE);
  await page.click("#send");
  await page.locator("#error").filter({ hasText: /Wait \d+ seconds? before asking for another code\./ }).waitFor();
  assert.ok(await page.locator("#send").isDisabled(), "send waits too");
  await countsDown(page, "#error");
  await shot("6-wait");

  assert.deepEqual(problems, [], "the page logged no errors");
  console.log("the login page walked through in chromium");
} finally {
  await browser.close();
}
