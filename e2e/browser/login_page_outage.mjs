// The login page keeps a valid session through a PostgreSQL outage: signed in, with an
// access token that no longer works, a reload during the outage (when /refresh answers
// 503) shows the outage and keeps the session; once PostgreSQL is back, a reload signs in
// with it. The test cuts and restores PostgreSQL when this walk asks, on stdout
// (`@@cut-database`, `@@restore-database`), and answers on stdin when it is done.
// Run by e2e/tests/it/login_page_browser.rs, which passes:
//   API_URL, SANDBOX_URL, PHONE (digits), CHROMIUM (optional)
import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { TIMEOUT, launch, settings } from "./walk.mjs";

const { API_URL, SANDBOX_URL, PHONE } = settings(["API_URL", "SANDBOX_URL", "PHONE"]);

const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
// Asks the test to do `what`, and waits until it says it is done.
async function ask(what) {
  console.log(`@@${what}`);
  const answer = await answers.next();
  assert.equal(answer.value, "done", `the test did ${what}`);
}

const browser = await launch();

// stdin keeps node running: the walk ends the process itself, failing or not.
let failed = false;
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();

  console.log("1. sign in");
  await page.goto(`${API_URL}/`);
  await page.locator("#phone").fill(`+${PHONE}`);
  await page.click("#send");
  await page.locator("#step-code").waitFor({ state: "visible" });
  let code = null;
  for (let tries = 0; !code && tries < 150; tries += 1) {
    const answer = await fetch(`${SANDBOX_URL}/sandbox/last-code/${PHONE}`);
    if (answer.ok) code = (await answer.json()).code;
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(code, "the code arrived");
  await page.locator("#code").fill(code);
  await page.click("#verify");
  await page.locator("#step-signed-in").waitFor({ state: "visible" });

  console.log("2. PostgreSQL away, the access token spent: a reload keeps the session");
  const session = () => page.evaluate(() => sessionStorage.getItem("otp-gateway-session"));
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem("otp-gateway-session"));
    sessionStorage.setItem("otp-gateway-session", JSON.stringify({ ...s, token: "expired" }));
  });
  const kept = await session();
  await ask("cut-database");
  await page.reload();
  await page.locator("#error").filter({ hasText: /unavailable/ }).waitFor();
  assert.equal(await session(), kept, "the session is kept through the outage");

  console.log("3. PostgreSQL back: a reload signs in with the same session");
  await ask("restore-database");
  await page.reload();
  await page.locator("#step-signed-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#me-phone").textContent(), `+${PHONE}`);
  console.log("the session outlived the outage");
} catch (error) {
  console.error(error);
  failed = true;
} finally {
  await browser.close();
  process.exit(failed ? 1 : 0);
}
