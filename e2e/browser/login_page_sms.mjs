// Walks the login page's "Send by SMS instead" in Debian's chromium against a running
// pipeline with SMS on for one country: a number of that country gets the link once its
// code is pending, asks for SMS, reads the code from the sandbox's SMS, and signs in; a
// number of another country never sees the link.
// Run by e2e/tests/login_page_browser.rs, which starts the pipeline and passes:
//   API_URL, SANDBOX_URL, SMS_PHONE and OTHER_PHONE (digits), SCREENSHOTS, CHROMIUM (optional)
import assert from "node:assert/strict";
import { TIMEOUT, launch, settings, watch } from "./walk.mjs";

const { API_URL, SANDBOX_URL, SMS_PHONE, OTHER_PHONE, SCREENSHOTS } = settings(["API_URL", "SANDBOX_URL", "SMS_PHONE", "OTHER_PHONE", "SCREENSHOTS"]);

const browser = await launch();

// The newest SMS the sandbox's Twilio took for `phone`, polled until there is one.
async function latestSms(phone) {
  const until = Date.now() + TIMEOUT;
  while (Date.now() < until) {
    const answer = await fetch(`${SANDBOX_URL}/sandbox/sms/${phone}`);
    const { messages } = await answer.json();
    if (messages.length > 0) return messages.at(-1);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no SMS reached ${phone}`);
}

try {
  const context = await browser.newContext({ viewport: { width: 520, height: 760 } });
  context.setDefaultTimeout(TIMEOUT);
  const problems = [];
  const page = await context.newPage();
  watch(page, problems);

  console.log("1. a number of a country without SMS: no link");
  await page.goto(`${API_URL}/`);
  await page.locator("#phone").fill(`+${OTHER_PHONE}`);
  await page.click("#send");
  await page.locator("#step-code").waitFor({ state: "visible" });
  assert.ok(await page.locator("#by-sms").isHidden(), "no SMS where it is not allowed");
  await page.click("#change-phone");

  console.log("2. a number of the SMS country: the link, once the code is pending");
  await page.locator("#phone").fill(`+${SMS_PHONE}`);
  await page.click("#send");
  await page.locator("#step-code").waitFor({ state: "visible" });
  await page.locator("#by-sms").waitFor({ state: "visible" });
  assert.match(await page.locator("#sent-to").textContent(), /on WhatsApp/);

  console.log("3. send by SMS instead: the same code comes by SMS");
  await page.locator("#by-sms:not([disabled])").click();
  await page.locator("#sent-to").filter({ hasText: /by SMS/ }).waitFor();
  assert.ok(await page.locator("#by-sms").isHidden(), "asked once, the link goes");
  const sms = await latestSms(SMS_PHONE);
  const code = /^\d+/.exec(sms.text)[0];
  await page.locator("#delivery").filter({ hasText: /by SMS/ }).waitFor();
  await page.screenshot({ path: `${SCREENSHOTS}/7-by-sms.png` });

  console.log("4. the SMS's code signs in");
  await page.locator("#code").fill(code);
  await page.click("#verify");
  await page.locator("#step-signed-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#me-phone").textContent(), `+${SMS_PHONE}`);

  assert.deepEqual(problems, [], "the page logged no errors");
  console.log("send by SMS instead walked through in chromium");
} finally {
  await browser.close();
}
