//! The login page in a real browser: Debian's chromium, driven by playwright-core
//! (`e2e/browser/login_page.mjs`), walks the whole flow against a running api, worker
//! and sandbox, the "Send by SMS instead" walk with SMS on (`login_page_sms.mjs`), and the
//! human check with the sandbox's widget (`login_page_captcha.mjs`).
//! Screenshots go to `target/browser-screenshots/` (CI keeps them). A
//! missing chromium, node or playwright-core fails the test, naming what to install.

use std::path::{Path, PathBuf};
use std::time::Duration;

use otp_e2e::TestEnv;

const PHONE: &str = "919811122233";
/// The phone of the outage walk.
const OUTAGE_PHONE: &str = "919811122244";
/// The phone of the human check's walk.
const CHECK_PHONE: &str = "919811122255";
/// A number of the country the SMS walk allows SMS to.
const SMS_PHONE: &str = "447911123457";
/// The screenshots the whole walk writes.
const SHOTS: [&str; 5] = ["1-phone", "2-code", "4-wrong-code", "5-signed-in", "6-wait"];
/// The whole walk takes a few seconds; this bounds a browser that hangs.
const WALK_DEADLINE: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

fn require(what: &str, present: bool, install: &str) {
    assert!(present, "{what} is missing: {install} (.ci/run does)");
}

/// Checks that chromium and playwright-core are there (failing, naming what to install,
/// when not); the folder of the walks, and of their screenshots.
fn browser_ready() -> (PathBuf, PathBuf) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    require(
        "chromium",
        chromium().exists(),
        "apt-get install chromium, or set CHROMIUM",
    );
    require(
        "playwright-core",
        browser_dir.join("node_modules/playwright-core").exists(),
        "npm ci --prefix e2e/browser",
    );
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/browser-screenshots")
        .canonicalize()
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots")
        });
    (browser_dir, screenshots)
}

/// Runs the walk `script` with `vars` (and the api's and sandbox's URLs, the
/// screenshots' folder and the browser) against `env`; fails the test if it fails.
async fn walk(env: &TestEnv, script: &str, vars: &[(&str, &str)]) {
    let (browser_dir, screenshots) = browser_ready();
    let walk = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(&browser_dir)
        .env("API_URL", &env.api_url)
        .env("SANDBOX_URL", &env.sandbox_url)
        .envs(vars.iter().copied())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WALK_DEADLINE, walk)
        .await
        .expect("the browser walk ended within its deadline")
        .unwrap_or_else(|e| panic!("node is missing ({e}): apt-get install nodejs"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the walk failed:\n{text}");
}

/// Fails unless the walk wrote screenshot `name` (and not an empty file).
fn written(screenshots: &Path, name: &str) {
    let file = screenshots.join(format!("{name}.png"));
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1_000, "{} was not written", file.display());
}

#[tokio::test]
async fn the_login_page_walks_through_in_chromium() {
    let (_, screenshots) = browser_ready();
    // A screenshot from an earlier run must not stand in for this one's. (Only this
    // walk's: the SMS walk writes beside them, maybe at the same time.)
    for shot in SHOTS {
        let _ = std::fs::remove_file(screenshots.join(format!("{shot}.png")));
    }

    let mut env = TestEnv::new().await;
    let inbox = format!("{}/sandbox/", env.sandbox_url);
    let mut config =
        env.api_config_with(&["--login-page", "true", "--login-page-inbox-url", &inbox]);
    // The page's countdowns need a cooldown to count, long enough that the last step's
    // send is still inside it however slowly the machine runs the steps before.
    config.limits.resend_cooldown = std::time::Duration::from_secs(300);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    walk(&env, "login_page.mjs", &[("PHONE", PHONE)]).await;
    for shot in SHOTS {
        written(&screenshots, shot);
    }
}

#[tokio::test]
async fn send_by_sms_instead_walks_through_in_chromium() {
    let (_, screenshots) = browser_ready();
    let _ = std::fs::remove_file(screenshots.join("7-by-sms.png"));
    // SMS to the United Kingdom only; no cooldown, so the link is live at once.
    let mut env = TestEnv::new().await;
    let _api = env.start_sms_api("44", &["--login-page", "true"]).await;
    let _worker = env
        .start_worker_with(env.sms_worker_config("44", Duration::ZERO))
        .await;
    walk(
        &env,
        "login_page_sms.mjs",
        &[("SMS_PHONE", SMS_PHONE), ("OTHER_PHONE", PHONE)],
    )
    .await;
    written(&screenshots, "7-by-sms");
    assert_eq!(env.sandbox.sms_calls(SMS_PHONE).len(), 1, "one SMS");
}

#[tokio::test]
async fn the_login_page_asks_for_the_human_check_in_chromium() {
    let (_, screenshots) = browser_ready();
    let _ = std::fs::remove_file(screenshots.join("8-human-check.png"));
    let mut env = TestEnv::new().await;
    let verify_url = format!("{}/turnstile/v0/siteverify", env.sandbox_url);
    let script_url = format!("{}/sandbox/captcha/api.js", env.sandbox_url);
    let config = env.api_config_with(&[
        "--login-page",
        "true",
        "--captcha-provider",
        "turnstile",
        "--captcha-site-key",
        wati_sandbox::DEFAULT_TURNSTILE_SITE_KEY,
        "--captcha-secret",
        wati_sandbox::DEFAULT_TURNSTILE_SECRET,
        "--captcha-verify-url",
        &verify_url,
        "--captcha-script-url",
        &script_url,
        "--captcha-after-sends",
        "1",
    ]);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    // The phone's one free send, spent: the page's send needs the check.
    assert_eq!(env.send_otp(CHECK_PHONE).await.0, 202);
    env.wait_for_messages(CHECK_PHONE, 1).await;
    walk(&env, "login_page_captcha.mjs", &[("PHONE", CHECK_PHONE)]).await;
    written(&screenshots, "8-human-check");
    let verified = env.sandbox.captcha_verifications();
    assert_eq!(
        verified.len(),
        1,
        "the widget's token redeemed once: {verified:?}"
    );
    assert_eq!(verified[0].outcome, wati_sandbox::CaptchaOutcome::Passed);
}

#[tokio::test]
async fn a_session_outlives_a_postgresql_outage_in_chromium() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let (browser_dir, _) = browser_ready();
    let mut env = TestEnv::new().await;
    let proxy = otp_e2e::proxy::Proxy::start("127.0.0.1:5432").await;
    let mut config = env.api_config_with(&["--login-page", "true"]);
    config.database_url = env
        .database_url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port()));
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;

    let mut node = tokio::process::Command::new("node")
        .arg("login_page_outage.mjs")
        .current_dir(&browser_dir)
        .env("API_URL", &env.api_url)
        .env("SANDBOX_URL", &env.sandbox_url)
        .env("PHONE", OUTAGE_PHONE)
        .env("CHROMIUM", chromium())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node is missing ({e}): apt-get install nodejs"));
    let mut stdin = node.stdin.take().expect("stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut said = Vec::new();
    // Cuts and restores PostgreSQL when the walk asks, until it ends.
    let walked = tokio::time::timeout(WALK_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            match line.as_str() {
                "@@cut-database" => proxy.cut(),
                "@@restore-database" => proxy.restore(),
                _ => {
                    said.push(line);
                    continue;
                }
            }
            stdin.write_all(b"done\n").await.expect("answer the walk");
        }
        node.wait().await.expect("the walk ends")
    })
    .await
    .expect("the browser walk ended within its deadline");
    assert!(walked.success(), "the walk failed:\n{}", said.join("\n"));
}
