// Walks the login page's human check in Debian's chromium against a running pipeline
// with the check on (the sandbox standing in for Turnstile): the number has had its free
// sends, so Send code answers 403 CAPTCHA_REQUIRED with a code pending; the page shows the
// code step and the provider's widget (its script loaded from the sandbox, let in by the
// page's policy), the person clicks it, the page asks again with the token, and the new
// send's code signs in. A console error (a policy violation among them) fails it.
// Run by e2e/tests/it/login_page_browser.rs, which starts the pipeline and passes:
//   API_URL, SANDBOX_URL, PHONE (digits, its free sends spent), SCREENSHOTS, CHROMIUM (optional)
import assert from "node:assert/strict";
import { TIMEOUT, launch, settings, watch } from "./walk.mjs";

const { API_URL, SANDBOX_URL, PHONE, SCREENSHOTS } = settings(["API_URL", "SANDBOX_URL", "PHONE", "SCREENSHOTS"]);

const browser = await launch();

// The WhatsApp messages the sandbox took for `phone`, polled until there are `count`.
async function messages(phone, count) {
  const until = Date.now() + TIMEOUT;
  while (Date.now() < until) {
    const answer = await fetch(`${SANDBOX_URL}/sandbox/messages?phone=${phone}`);
    const { messages } = await answer.json();
    if (messages.length >= count) return messages;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`fewer than ${count} messages reached ${phone}`);
}

try {
  const context = await browser.newContext({ viewport: { width: 520, height: 760 } });
  context.setDefaultTimeout(TIMEOUT);
  const problems = [];
  const page = await context.newPage();
  watch(page, problems);
  const before = (await messages(PHONE, 1)).length;

  console.log("1. the page loads no widget until asked");
  await page.goto(`${API_URL}/`);
  assert.equal(await page.locator("script[src]").count(), 0, "no widget script yet");

  console.log("2. send code: the check, and the code step for the pending code");
  await page.locator("#phone").fill(`+${PHONE}`);
  await page.click("#send");
  await page.locator("#step-code").waitFor({ state: "visible" });
  await page.locator("#human-check").waitFor({ state: "visible" });
  assert.match(await page.locator("#notice").textContent(), /check/);
  const human = page.getByRole("button", { name: "I am human" });
  await human.waitFor();
  await page.screenshot({ path: `${SCREENSHOTS}/8-human-check.png` });

  console.log("3. the person passes it: the page asks again and a code comes");
  await human.click();
  await page.locator("#sent-to").filter({ hasText: /We sent a code/ }).waitFor();
  assert.ok(await page.locator("#human-check").isHidden(), "the widget goes");
  const all = await messages(PHONE, before + 1);
  const code = all.at(-1).code;

  console.log("4. its code signs in");
  await page.locator("#code").fill(code);
  await page.click("#verify");
  await page.locator("#step-signed-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#me-phone").textContent(), `+${PHONE}`);

  assert.deepEqual(problems, [], "the page logged no errors");
  console.log("the human check walked through in chromium");
} finally {
  await browser.close();
}
