//! The receipts stage: the same burst twice on fresh stacks, first without receipts,
//! then with the sandbox posting WATI's three receipts per code (sent, delivered, read)
//! to the api's webhook; intake and delivery rates side by side, and every send's final
//! status counted in Redis (none may be lost: every send ends `read`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use otp_api::phone::PhoneNumber;
use serde_json::{Value, json};
use wati_sandbox::{ReceiptSettings, Sandbox};

use crate::stack::{Services, StackBudgets, StackSettings, with_stack};
use crate::{CODE_LIFE, load, start_sandbox};

const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// What the stage runs against.
pub struct Settings<'a> {
    pub services: &'a Services,
    pub prefix: &'a str,
    pub log_level: &'a str,
    pub workers: usize,
    /// `WORKER_CONCURRENCY` and `WATI_BATCH_MAX`; the product's defaults when `None`.
    pub worker_concurrency: Option<u16>,
    pub concurrency: usize,
    /// When the sandbox posts `delivered` and `read` after accepting a message.
    pub delivered_after: Duration,
    pub read_after: Duration,
}

/// Runs both halves; returns their lines, the comparison last.
pub async fn run(settings: &Settings<'_>, phones: &[PhoneNumber]) -> anyhow::Result<Vec<Value>> {
    let (off_phones, on_phones) = phones.split_at(phones.len() / 2);
    let mut lines = half(settings, off_phones, false).await?;
    lines.extend(half(settings, on_phones, true).await?);
    let rate = |stage: &str| {
        lines
            .iter()
            .find(|l| l["stage"] == stage)
            .and_then(|l| l["per_second"].as_f64())
            .unwrap_or(0.0)
    };
    let comparison = json!({
        "stage": "receipts_comparison",
        "intake_with_over_without": crate::stats::ratio(rate("receipts_on_intake"), rate("receipts_off_intake")),
        "delivery_with_over_without": crate::stats::ratio(rate("receipts_on_delivery"), rate("receipts_off_delivery")),
    });
    lines.push(comparison);
    Ok(lines)
}

async fn half(
    settings: &Settings<'_>,
    phones: &[PhoneNumber],
    receipts: bool,
) -> anyhow::Result<Vec<Value>> {
    let label = if receipts {
        "receipts_on"
    } else {
        "receipts_off"
    };
    let (sandbox, wati_base_url) = start_sandbox(Duration::ZERO, 0).await?;
    let prefix = format!("{}{}", settings.prefix, if receipts { "r1" } else { "r0" });
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &wati_base_url,
        workers: settings.workers,
        worker_concurrency: settings.worker_concurrency,
        log_level: settings.log_level,
        webhook_secret: receipts.then_some(WEBHOOK_SECRET),
        sms: None,
        limits: crate::stack::ApiLimits::Off,
        api_env: &[],
        budgets: StackBudgets {
            api_version: "v3",
            calls_per_10s: 0,
            messages_per_second: 0,
            batch_max: settings.worker_concurrency.map(u32::from),
            ttl_seconds: CODE_LIFE.as_secs(),
            numbers: 0,
        },
    };
    with_stack(&stack_settings, async |stack| {
        if receipts {
            sandbox.set_receipts(ReceiptSettings {
                webhook_url: Some(format!(
                    "{}/api/webhooks/wati/{WEBHOOK_SECRET}",
                    stack.api_url
                )),
                delivered_after: settings.delivered_after,
                read_after: settings.read_after,
                repeat: 1,
                reorder: false,
            });
        }
        let (mut intake, responses) =
            load::burst(stack.api_addr, phones, settings.concurrency).await?;
        intake["stage"] = json!(format!("{label}_intake"));
        let mut delivery = load::delivery(
            &sandbox,
            &responses,
            &format!("{label}_delivery"),
            CODE_LIFE,
            0,
        )
        .await;
        delivery["receipts"] = json!(receipts);
        let mut lines = vec![intake, delivery];
        if receipts {
            lines.push(
                final_statuses(settings, &prefix, &sandbox, responses.accepted_at.len()).await?,
            );
        }
        let (api_mb, worker_mb) = stack.peak_rss_mb();
        let (api_cpu, worker_cpu) = stack.cpu_seconds();
        lines.push(json!({
            "stage": format!("{label}_resources"),
            "api_peak_rss_mb": api_mb,
            "worker_peak_rss_mb": worker_mb,
            "api_cpu_seconds": api_cpu,
            "worker_cpu_seconds": worker_cpu,
        }));
        anyhow::Ok(lines)
    })
    .await
}

/// Waits until every accepted send is `read` (or nothing moves for 30 s), then counts
/// the final states; `lost` is every accepted send that did not end `read`.
async fn final_statuses(
    settings: &Settings<'_>,
    prefix: &str,
    sandbox: &Sandbox,
    accepted: usize,
) -> anyhow::Result<Value> {
    let mut redis = otp_shared::redis::conn::connect(&settings.services.redis_url).await?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut states = BTreeMap::new();
    loop {
        let counted = count_states(&mut redis, prefix).await?;
        let read = counted.get("read").copied().unwrap_or(0);
        if counted != states {
            last_progress = Instant::now();
            states = counted;
        }
        if read >= accepted || last_progress.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read = states.get("read").copied().unwrap_or(0);
    Ok(json!({
        "stage": "receipts_on_statuses",
        "accepted": accepted,
        "states": states,
        "lost": accepted.saturating_sub(read),
        "receipts_posted": sandbox.receipts_posted(),
        "receipts_failed": sandbox.receipts_failed(),
        "all_read_after_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}

/// How many sends of `prefix` are in each state.
async fn count_states(
    redis: &mut otp_shared::redis::conn::RedisConn,
    prefix: &str,
) -> redis::RedisResult<BTreeMap<String, usize>> {
    let mut states = BTreeMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:{{*}}:status:*"))
            .arg("COUNT")
            .arg(5_000)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.hget(key, otp_shared::redis::records::status::STATE);
            }
            let found: Vec<Option<String>> = pipe.query_async(redis).await?;
            for state in found.into_iter().flatten() {
                *states.entry(state).or_default() += 1;
            }
        }
        if next == 0 {
            return Ok(states);
        }
        cursor = next;
    }
}
