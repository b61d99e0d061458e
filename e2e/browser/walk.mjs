// What every walk of the login page shares: its settings from the environment, Debian's
// chromium (or CHROMIUM), and a watch that collects a page's script errors and console
// errors (a policy violation among them) for the walk to fail on.
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

// How long a walk waits for any one step.
export const TIMEOUT = 15_000;

// The variables `names` from the environment, each required; SCREENSHOTS, when asked
// for, is made a directory.
export function settings(names) {
  const values = {};
  for (const name of names) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    values[name] = value;
  }
  if (values.SCREENSHOTS) mkdirSync(values.SCREENSHOTS, { recursive: true });
  return values;
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

// Adds `page`'s script errors and console errors to `problems`, named `name` when given.
// The API's own refusals (a wrong code's 401, a 403 or 429) are logged as failed loads:
// expected. Anything else (a policy violation, "Refused to load…", a script error) is not.
export function watch(page, problems, name) {
  const from = name ? `${name}: ` : "";
  page.on("pageerror", (error) => problems.push(`${from}page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`${from}console error: ${message.text()}`);
    }
  });
}
