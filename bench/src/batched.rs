//! The batched-delivery stage: WATI enforcing its plan limit (the sandbox answers 429
//! past it) and a Meta message rate, a burst of distinct phones through v3, then the
//! same limit through v1 (one call per code) for comparison. Each half runs its own
//! api and workers, sandbox and prefix.

use std::time::Duration;

use otp_api::phone::PhoneNumber;
use serde_json::{Value, json};

use crate::stack::{Services, StackBudgets, StackSettings, with_stack};
use crate::{load, start_sandbox};

/// What the stage runs against.
pub struct Settings<'a> {
    pub services: &'a Services,
    pub prefix: &'a str,
    pub log_level: &'a str,
    pub workers: usize,
    /// Connections of the burst.
    pub concurrency: usize,
    /// WATI's plan limit, enforced by the sandbox and kept by the workers.
    pub calls_per_10s: u32,
    pub messages_per_second: u32,
    pub batch_max: u32,
}

/// One half of the stage: an API version, its phones and its code life.
pub struct Half<'a> {
    pub label: &'static str,
    pub api_version: &'static str,
    pub phones: &'a [PhoneNumber],
    pub ttl_seconds: u64,
}

/// Runs one half: the burst, then waiting for every 202 to reach the sandbox.
/// Returns the intake and delivery lines.
pub async fn run(settings: &Settings<'_>, half: &Half<'_>) -> anyhow::Result<(Value, Value)> {
    let (sandbox, wati_base_url) = start_sandbox(Duration::ZERO, settings.calls_per_10s).await?;
    let prefix = format!("{}{}", settings.prefix, half.api_version);
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &wati_base_url,
        workers: settings.workers,
        worker_concurrency: None,
        log_level: settings.log_level,
        webhook_secret: None,
        sms: None,
        limits: crate::stack::ApiLimits::Off,
        api_env: &[],
        budgets: StackBudgets {
            api_version: half.api_version,
            calls_per_10s: settings.calls_per_10s,
            messages_per_second: settings.messages_per_second,
            batch_max: Some(settings.batch_max),
            ttl_seconds: half.ttl_seconds,
        },
    };
    with_stack(&stack_settings, async |stack| {
        let (mut intake, responses) =
            load::burst(stack.api_addr, half.phones, settings.concurrency).await?;
        // Refusals over capacity are the point here, not errors.
        let refused = responses.statuses.get(&503).copied().unwrap_or(0);
        intake["stage"] = json!(format!("{}_intake", half.label));
        intake["refused"] = json!(refused);
        intake["errors"] = json!(intake["errors"].as_u64().unwrap_or(0) - refused as u64);
        let code_life = Duration::from_secs(half.ttl_seconds);
        let mut delivery = load::delivery(
            &sandbox,
            &responses,
            &format!("{}_delivery", half.label),
            code_life,
            0,
        )
        .await;
        let log = sandbox.call_log();
        let recipients: Vec<usize> = log.iter().map(|c| c.recipients.len()).collect();
        delivery["wati_api_version"] = json!(half.api_version);
        delivery["wati_calls"] = json!(log.len());
        delivery["wati_429s"] = json!(sandbox.rate_limited());
        delivery["max_recipients_per_call"] = json!(recipients.iter().max());
        delivery["calls_per_10s"] = json!(settings.calls_per_10s);
        delivery["messages_per_second"] = json!(settings.messages_per_second);
        delivery["code_life_seconds"] = json!(half.ttl_seconds);
        let (api_mb, worker_mb) = stack.peak_rss_mb();
        delivery["api_peak_rss_mb"] = json!(api_mb);
        delivery["worker_peak_rss_mb"] = json!(worker_mb);
        anyhow::Ok((intake, delivery))
    })
    .await
}
