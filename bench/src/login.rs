//! The login stage: codes are sent and delivered first, then each is verified at a
//! steady rate, twice (first logins, which create users in PostgreSQL, then the same
//! phones returning); the latency of the logins and the CPU each costs the api,
//! PostgreSQL and Redis. `--login-api-binary` runs it against another api build, such
//! as one that kept users in Redis, for the comparison without PostgreSQL.

use std::path::Path;
use std::time::Duration;

use otp_api::phone::PhoneNumber;
use serde_json::{Value, json};

use crate::stack::{Services, Stack, StackBudgets, StackSettings, with_stack};
use crate::stats::summary;
use crate::{CODE_LIFE, load, start_sandbox};

const VERIFY_PATH: &str = "/api/auth/verify-otp";

/// What the stage runs against.
pub struct Settings<'a> {
    pub services: &'a Services,
    pub prefix: &'a str,
    pub log_level: &'a str,
    pub workers: usize,
    /// `WORKER_CONCURRENCY` and `WATI_BATCH_MAX`; the product's defaults when `None`.
    pub worker_concurrency: Option<u16>,
    /// Connections of the send bursts and of the logins.
    pub concurrency: usize,
    /// Logins a second.
    pub rate: u32,
    pub api_binary: Option<&'a Path>,
}

/// CPU seconds used so far by the api, by every PostgreSQL process and by Redis.
struct Cpu {
    api: f64,
    postgres: f64,
    redis: f64,
}

impl Cpu {
    fn now(stack: &Stack) -> Self {
        Self {
            api: stack.cpu_seconds().0,
            postgres: crate::stack::cpu_seconds_named("postgres"),
            redis: crate::stack::cpu_seconds_named("redis-server"),
        }
    }

    /// Milliseconds of CPU per login between `self` and `later`.
    fn per_login_since(&self, later: &Cpu, logins: usize) -> Value {
        let per = |before: f64, after: f64| {
            ((after - before) * 1000.0 / logins.max(1) as f64 * 1000.0).round() / 1000.0
        };
        let (api, postgres, redis) = (
            per(self.api, later.api),
            per(self.postgres, later.postgres),
            per(self.redis, later.redis),
        );
        json!({
            "api": api,
            "postgres": postgres,
            "redis": redis,
            "total": ((api + postgres + redis) * 1000.0).round() / 1000.0,
        })
    }
}

/// Runs both rounds on one stack; returns a line for each.
pub async fn run(settings: &Settings<'_>, phones: &[PhoneNumber]) -> anyhow::Result<Vec<Value>> {
    let (sandbox, wati_base_url) = start_sandbox(Duration::ZERO, 0).await?;
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: settings.prefix,
        api_binary: settings.api_binary,
        wati_base_url: &wati_base_url,
        workers: settings.workers,
        worker_concurrency: settings.worker_concurrency,
        log_level: settings.log_level,
        webhook_secret: None,
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
        let mut lines = Vec::new();
        for (round, label) in ["login_new", "login_returning"].into_iter().enumerate() {
            let baseline = sandbox.accepted();
            let (intake, sent) = load::burst(stack.api_addr, phones, settings.concurrency).await?;
            let delivery = load::delivery(&sandbox, &sent, label, CODE_LIFE, baseline).await;
            let requests: Vec<(String, String)> = phones
                .iter()
                .filter_map(|phone| {
                    let code = sandbox.messages(phone.as_str()).get(round)?.code.clone();
                    let body = json!({"phone": phone.as_str(), "code": code}).to_string();
                    Some((phone.as_str().to_owned(), body))
                })
                .collect();
            let before = Cpu::now(stack);
            let (mut logins, elapsed) = load::paced(
                stack.api_addr,
                VERIFY_PATH,
                requests,
                settings.rate,
                settings.concurrency,
                200,
            )
            .await?;
            let after = Cpu::now(stack);
            lines.push(json!({
                "stage": label,
                "api_binary": settings.api_binary.map(Path::display).map(|p| p.to_string()),
                "logins": logins.latencies.len(),
                "target_per_second": settings.rate,
                "per_second": (logins.latencies.len() as f64 / elapsed.as_secs_f64()).round(),
                "latency": summary(&mut logins.latencies),
                "cpu_ms_per_login": before.per_login_since(&after, logins.accepted_at.len()),
                "errors": logins.errors() + intake["errors"].as_u64().unwrap_or(0) as usize,
                "missing": delivery["missing"],
                "statuses": logins.statuses,
            }));
        }
        anyhow::Ok(lines)
    })
    .await
}
