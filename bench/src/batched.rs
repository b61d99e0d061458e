//! The batched-delivery stage: WATI enforcing its plan limit (the sandbox answers 429
//! past it) and Meta's message rate per sending number (130429 past it), a burst of
//! distinct phones through v3, then the same limit through v1 (one call per code) for
//! comparison; with a pool of sending numbers, the burst again from the pool, and from
//! the pool with one number degraded (131048) mid-burst. Each half runs its own api and
//! workers, sandbox and prefix.

use std::time::Duration;

use otp_api::phone::PhoneNumber;
use serde_json::{Value, json};

use crate::stack::{BurstCpu, Services, StackBudgets, StackSettings, pool_number, with_stack};
use crate::{load, start_sandbox};
use otp_shared::now_ms;
use otp_shared::redis::sender_health::SenderHealth;
use wati_sandbox::{MessageRates, ReceiptSettings, SPAM_RATE_LIMIT_CODE, Sandbox, THROUGHPUT_CODE};

/// Waits until every accepted phone has a message at the sandbox, or nothing new has
/// arrived for 30 s (the rest is then missing).
async fn every_phone_has_a_message(sandbox: &Sandbox, responses: &load::Responses) {
    let phones = &responses.accepted_at;
    load::until_done_or_stalled(phones.len(), Duration::from_millis(500), || {
        phones
            .keys()
            .filter(|phone| !sandbox.messages(phone).is_empty())
            .count()
    })
    .await;
}

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
    /// What its stack's prefix adds to the stage's (lowercase letters and digits).
    pub prefix: &'static str,
    pub api_version: &'static str,
    pub phones: &'a [PhoneNumber],
    pub ttl_seconds: u64,
    /// Sending numbers (0: WATI's default channel).
    pub numbers: u32,
    /// When the first number degrades (its messages fail with 131048), from the
    /// burst's start. Receipts then come to the api, so that the number is paused (the
    /// other runs have none, as the one-number run before the pool had none).
    pub degrade_at: Option<Duration>,
}

/// The webhook secret of the pool's stacks.
const WEBHOOK_SECRET: &str = "bench-batched-webhook-secret-0123456789";

/// Runs one half: the burst, then waiting for every 202 to reach the sandbox.
/// Returns the intake and delivery lines.
pub async fn run(settings: &Settings<'_>, half: &Half<'_>) -> anyhow::Result<(Value, Value)> {
    let (sandbox, wati_base_url) = start_sandbox(Duration::ZERO, settings.calls_per_10s).await?;
    // Meta's rate, per number, at WATI's side.
    sandbox.set_message_rates(MessageRates::every_number(settings.messages_per_second));
    let pool: Vec<String> = (1..=half.numbers).map(pool_number).collect();
    if !pool.is_empty() {
        sandbox.put_templates_on(&pool.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let prefix = format!("{}{}", settings.prefix, half.prefix);
    // The sandbox posts its receipts from this machine, as the burst comes: one client
    // to the api, which would cut the receipts off at its per-client cap (WATI posts
    // from its own addresses).
    let api_env: Vec<(&str, String)> = if half.degrade_at.is_some() {
        vec![("HTTP_MAX_CONNECTIONS_PER_CLIENT", "0".to_owned())]
    } else {
        Vec::new()
    };
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &wati_base_url,
        workers: settings.workers,
        worker_concurrency: None,
        log_level: settings.log_level,
        webhook_secret: half.degrade_at.is_some().then_some(WEBHOOK_SECRET),
        sms: None,
        limits: crate::stack::ApiLimits::Off,
        api_env: &api_env,
        budgets: StackBudgets {
            api_version: half.api_version,
            calls_per_10s: settings.calls_per_10s,
            messages_per_second: settings.messages_per_second,
            batch_max: Some(settings.batch_max),
            ttl_seconds: half.ttl_seconds,
            numbers: half.numbers,
        },
    };
    with_stack(&stack_settings, async |stack| {
        if half.degrade_at.is_some() {
            sandbox.set_receipts(ReceiptSettings {
                webhook_url: Some(format!(
                    "{}/api/webhooks/wati/{WEBHOOK_SECRET}",
                    stack.api_url
                )),
                // Delivered receipts only: reads would double the api's receipts.
                read_after: Duration::from_secs(3600),
                ..ReceiptSettings::default()
            });
        }
        // The burst starts on quiet cores (a build next door moves intake more than what
        // is measured), and what each process used during it is reported.
        let busy_before = load::quiet_machine(Duration::from_secs(60)).await;
        let health = SenderHealth::new(
            otp_shared::redis::connect(&settings.services.redis_url).await?,
            &otp_shared::redis::Keys::new(&prefix),
            Duration::from_secs(30),
        );
        let degraded = half.degrade_at.map(|after| {
            let sandbox = sandbox.clone();
            let health = health.clone();
            let number = pool_number(1);
            let at_ms = now_ms() + after.as_millis() as u64;
            // Degrades the number, then waits until the product pauses it: how long that
            // took (`None`: not within a code's life).
            let paused_after = tokio::spawn(async move {
                tokio::time::sleep(after).await;
                sandbox.degrade_number(&number, std::time::Instant::now());
                let degraded = std::time::Instant::now();
                while degraded.elapsed() < Duration::from_secs(300) {
                    if let Ok(states) = health.unhealthy(now_ms()).await
                        && states.contains_key(&number)
                    {
                        return Some(degraded.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None
            });
            (at_ms, paused_after)
        });
        let cpu_before = BurstCpu::now(stack);
        let (mut intake, responses) =
            load::burst(stack.api_addr, half.phones, settings.concurrency).await?;
        intake["burst_cpu_seconds"] = cpu_before.until_now(stack);
        intake["machine_busy_before_burst_percent"] = json!(busy_before);
        // Refusals over capacity are the point here, not errors.
        let refused = responses.statuses.get(&503).copied().unwrap_or(0);
        intake["stage"] = json!(format!("{}_intake", half.label));
        intake["refused"] = json!(refused);
        intake["errors"] = json!(intake["errors"].as_u64().unwrap_or(0) - refused as u64);
        let code_life = Duration::from_secs(half.ttl_seconds);
        if half.numbers > 0 {
            // Refused messages count as accepted at WATI: wait for the phones instead.
            every_phone_has_a_message(&sandbox, &responses).await;
        }
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
        let stats = sandbox.number_stats();
        let refused = |code: &str| -> u64 {
            stats
                .values()
                .map(|s| s.failed.get(code).copied().unwrap_or(0))
                .sum()
        };
        delivery["throughput_refusals_130429"] = json!(refused(THROUGHPUT_CODE));
        delivery["spam_refusals_131048"] = json!(refused(SPAM_RATE_LIMIT_CODE));
        delivery["numbers"] = json!(
            stats
                .iter()
                .map(|(number, s)| (
                    number.clone(),
                    json!({"accepted": s.accepted, "failed": s.failed})
                ))
                .collect::<serde_json::Map<_, _>>()
        );
        if let Some((at_ms, paused_after)) = degraded {
            let paused_after = paused_after.await.ok().flatten();
            delivery["paused_after_degraded_ms"] =
                json!(paused_after.map(|d| d.as_millis() as u64));
            // Deliveries after the degradation: messages that reached phones from then on.
            let reached: Vec<u64> = responses
                .accepted_at
                .keys()
                .flat_map(|phone| sandbox.messages(phone))
                .map(|m| m.received_at_ms)
                .filter(|at| *at >= at_ms)
                .collect();
            let last = reached.iter().max().copied().unwrap_or(at_ms);
            let span_s = (last.saturating_sub(at_ms) as f64 / 1000.0).max(0.001);
            delivery["degraded_at_s"] = json!(half.degrade_at.map(|d| d.as_secs_f64()));
            delivery["per_second_after_degraded"] = json!((reached.len() as f64 / span_s).round());
        }
        let (api_mb, worker_mb) = stack.peak_rss_mb();
        delivery["api_peak_rss_mb"] = json!(api_mb);
        delivery["worker_peak_rss_mb"] = json!(worker_mb);
        anyhow::Ok((intake, delivery))
    })
    .await
}
