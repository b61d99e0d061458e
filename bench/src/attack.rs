//! The attack stage (issue 24): small scripted attacks on a stack at the product's own
//! defaults, each without and then with the human check (Turnstile, the sandbox standing
//! in for Cloudflare), to show what an attacker still gets:
//!
//! - `lockout` (item 1): a stranger asks for codes for a phone whenever the api lets it
//!   and burns its wrong guesses on each, for `--attack-minutes`; on a second phone the
//!   owner tries to log in once a minute, as the login page would. How many minutes the
//!   owner was kept out, and how many messages the stranger alone caused.
//! - `flood` (item 4): with `SENDS_PER_MINUTE=200`, an attacker with 12 IPv6 networks
//!   floods new numbers for `--attack-flood-seconds` while 20 people try to get a code:
//!   how many of them did, and how many sends were billed.
//!
//! The api trusts this machine as its proxy (`TRUSTED_PROXIES`), so each request names
//! its client in `X-Forwarded-For`: every party has its own addresses, from the
//! benchmarking ranges (198.18.0.0/15, RFC 2544) and the documentation prefix
//! (2001:db8::/32, RFC 3849). Receipts are on, as in production.

mod client;
mod flood;
mod lockout;

use std::time::Duration;

use serde_json::Value;
use wati_sandbox::{
    DEFAULT_TURNSTILE_SECRET, DEFAULT_TURNSTILE_SITE_KEY, ReceiptSettings, Sandbox,
};

use crate::stack::{ApiLimits, Services, StackBudgets, StackSettings, with_stack};
use crate::{CODE_LIFE, start_sandbox};
use client::Api;

const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// What the stage runs against.
pub struct Settings<'a> {
    pub services: &'a Services,
    pub prefix: &'a str,
    pub log_level: &'a str,
    /// The lockout part's length (0: not run). The product's windows are an hour long.
    pub minutes: u64,
    /// The flood's length (0: not run).
    pub flood_seconds: u64,
}

/// Runs the lockout part (both variants at once: it is mostly waiting), then the flood
/// (one variant after the other: it is load); one line per part and variant.
pub async fn run(settings: &Settings<'_>) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    if settings.minutes > 0 {
        let (without, with) =
            tokio::join!(lockout::run(settings, false), lockout::run(settings, true));
        lines.push(without?);
        lines.push(with?);
    }
    if settings.flood_seconds > 0 {
        for human_check in [false, true] {
            lines.push(flood::run(settings, human_check).await?);
        }
    }
    Ok(lines)
}

/// What a part talks to: the api (through the client) and the sandbox behind it.
pub struct Target {
    pub api: Api,
    pub sandbox: Sandbox,
}

/// Starts a stack at the product's defaults on its own prefix (`{prefix}{part}`), with
/// the human check on or off and `extra` settings, runs `measure` against it, and
/// removes it; the line `measure` gives says how many of the stack's processes were no
/// longer running at its end (one that died makes every later request fail).
async fn on_stack(
    settings: &Settings<'_>,
    part: &str,
    human_check: bool,
    extra: &[(&str, String)],
    measure: impl AsyncFnOnce(&Target) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let (sandbox, sandbox_url) = start_sandbox(Duration::ZERO, 0).await?;
    let mut api_env: Vec<(&str, String)> =
        vec![("TRUSTED_PROXIES", "127.0.0.1/32,::1/128".to_owned())];
    if human_check {
        api_env.extend([
            ("CAPTCHA_PROVIDER", "turnstile".to_owned()),
            // The sandbox's keys (Cloudflare's documented dummy keys).
            ("CAPTCHA_SITE_KEY", DEFAULT_TURNSTILE_SITE_KEY.to_owned()),
            ("CAPTCHA_SECRET", DEFAULT_TURNSTILE_SECRET.to_owned()),
            (
                "CAPTCHA_VERIFY_URL",
                format!("{sandbox_url}/turnstile/v0/siteverify"),
            ),
        ]);
    }
    api_env.extend(extra.iter().cloned());
    let prefix = format!(
        "{}{part}{}",
        settings.prefix,
        if human_check { "1" } else { "0" }
    );
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &sandbox_url,
        workers: 1,
        worker_concurrency: None,
        log_level: settings.log_level,
        webhook_secret: Some(WEBHOOK_SECRET),
        sms: None,
        budgets: StackBudgets {
            api_version: "v3",
            calls_per_10s: 0,
            messages_per_second: 0,
            batch_max: None,
            ttl_seconds: CODE_LIFE.as_secs(),
            numbers: 0,
        },
        limits: ApiLimits::Product,
        api_env: &api_env,
    };
    with_stack(&stack_settings, async |stack| {
        sandbox.set_receipts(ReceiptSettings {
            webhook_url: Some(format!(
                "{}/api/webhooks/wati/{WEBHOOK_SECRET}",
                stack.api_url
            )),
            ..ReceiptSettings::default()
        });
        let target = Target {
            api: Api::new(&stack.api_url, &sandbox_url)?,
            sandbox: sandbox.clone(),
        };
        let mut line = measure(&target).await?;
        line["processes_exited"] = serde_json::json!(stack.exited());
        Ok(line)
    })
    .await
}
