//! Starts the api and the workers as real processes (the release binaries next to this
//! one), each stack on its own key prefix, queues and PostgreSQL database, so that their
//! memory and CPU can be read, and stops them and removes what they made at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

pub struct Stack {
    pub api_url: String,
    pub api_addr: std::net::SocketAddr,
    /// The Prometheus endpoints of the api and of each worker, to read counters the
    /// stores do not keep (such as what triggered each SMS fallback).
    pub metrics_urls: Vec<String>,
    api: Child,
    workers: Vec<Child>,
}

/// The shared servers every stack uses.
pub struct Services {
    pub redis_url: String,
    pub amqp_url: String,
    /// `AMQP_QUEUE_TYPE` of the stacks' processes.
    pub amqp_queue_type: &'static str,
    /// The PostgreSQL server, without a database: each stack makes its own.
    pub postgres_url: String,
}

/// What the processes are pointed at.
pub struct StackSettings<'a> {
    pub services: &'a Services,
    /// Names the stack's keys, queues and database: lowercase letters and digits.
    pub prefix: &'a str,
    /// The api binary to run instead of the one next to this binary (another build, to
    /// compare against).
    pub api_binary: Option<&'a Path>,
    pub wati_base_url: &'a str,
    pub workers: usize,
    /// `WORKER_CONCURRENCY`; the worker's default (twice the batch) when `None`.
    pub worker_concurrency: Option<u16>,
    pub log_level: &'a str,
    pub budgets: StackBudgets,
    /// `WATI_WEBHOOK_SECRET` of the api; receipts are off without one.
    pub webhook_secret: Option<&'a str>,
    /// SMS through Twilio (the sandbox's); SMS is off with `None`.
    pub sms: Option<StackSms<'a>>,
    /// The api's per-client and per-phone limits.
    pub limits: ApiLimits,
    /// More of the api's settings, set last (over the ones above).
    pub api_env: &'a [(&'a str, String)],
}

/// The api's abuse limits in a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiLimits {
    /// No limit per client address and no re-send cooldown: the throughput stages' load
    /// comes from one address, and would otherwise measure the client limit.
    Off,
    /// The product's own defaults, as an operator gets them (the attack stage).
    Product,
}

/// The SMS settings of a stack with SMS on: codes WhatsApp cannot deliver go by SMS
/// through the Twilio at `twilio_base_url`, whose status callbacks come to this stack's
/// api.
#[derive(Clone, Copy, Debug)]
pub struct StackSms<'a> {
    pub twilio_base_url: &'a str,
    /// `SMS_ALLOWED_COUNTRY_CODES`.
    pub allowed_country_codes: &'a str,
    /// `SMS_SENDS_PER_MINUTE` (0: no budget).
    pub sends_per_minute: u32,
    /// `FALLBACK_AFTER_SECONDS` (0: SMS only on a failure).
    pub fallback_after_seconds: u64,
}

/// The sender of the stacks' SMS (Twilio's test number).
const TWILIO_FROM: &str = "+15005550006";

/// The WATI budgets and code life both processes get.
#[derive(Clone, Copy, Debug)]
pub struct StackBudgets {
    /// `v1` or `v3`.
    pub api_version: &'static str,
    pub calls_per_10s: u32,
    pub messages_per_second: u32,
    /// `WATI_BATCH_MAX`; the product's default when `None`.
    pub batch_max: Option<u32>,
    pub ttl_seconds: u64,
    /// Sending numbers (`WATI_CHANNEL_NUMBERS`, named by [`pool_number`]); 0: WATI's
    /// default channel.
    pub numbers: u32,
}

/// The `i`th number of a stack's pool of sending numbers.
pub fn pool_number(i: u32) -> String {
    format!("1555000{i:04}")
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?
        .parent()
        .context("the bench binary has a folder")?
        .to_owned();
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn common(command: &mut Command, s: &StackSettings<'_>) {
    command
        .env_clear()
        .env("REDIS_URL", &s.services.redis_url)
        .env("AMQP_URL", &s.services.amqp_url)
        .env("AMQP_QUEUE_TYPE", s.services.amqp_queue_type)
        .env("KEY_PREFIX", s.prefix)
        .env("QUEUE_PREFIX", s.prefix)
        .env("OTP_SECRET", crate::OTP_SECRET)
        .env("WATI_API_VERSION", s.budgets.api_version)
        .env("WATI_CALLS_PER_10S", s.budgets.calls_per_10s.to_string())
        .env(
            "WHATSAPP_MESSAGES_PER_SECOND",
            s.budgets.messages_per_second.to_string(),
        )
        .env("OTP_TTL_SECONDS", s.budgets.ttl_seconds.to_string())
        .env("RUST_LOG", s.log_level)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(batch_max) = s.budgets.batch_max {
        command.env("WATI_BATCH_MAX", batch_max.to_string());
    }
    if s.budgets.numbers > 0 {
        let pool: Vec<String> = (1..=s.budgets.numbers).map(pool_number).collect();
        command.env("WATI_CHANNEL_NUMBERS", pool.join(","));
    }
}

/// The SMS settings the api and the workers share: the Twilio token (the api checks
/// the callbacks' signatures with it), where the callbacks go, countries and budget.
fn sms_shared(command: &mut Command, sms: &StackSms<'_>, api_url: &str) {
    command
        .env("SMS_PROVIDER", "twilio")
        .env("TWILIO_AUTH_TOKEN", wati_sandbox::DEFAULT_TWILIO_AUTH_TOKEN)
        // Plain http is accepted to this machine only, which is where the api is.
        .env(
            "TWILIO_STATUS_CALLBACK_URL",
            format!("{api_url}/api/webhooks/twilio"),
        )
        .env("SMS_ALLOWED_COUNTRY_CODES", sms.allowed_country_codes)
        .env("SMS_SENDS_PER_MINUTE", sms.sends_per_minute.to_string());
}

/// Starts a stack, runs `measure` against it, then stops it and removes its prefix's keys,
/// queues and database, whatever happened.
pub async fn with_stack<T>(
    settings: &StackSettings<'_>,
    measure: impl AsyncFnOnce(&Stack) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let measured = match Stack::start(settings).await {
        Ok(stack) => {
            let measured = measure(&stack).await;
            stack.stop();
            measured
        }
        Err(e) => Err(e),
    };
    crate::cleanup::remove(settings.services, settings.prefix).await;
    measured
}

impl Stack {
    pub async fn start(s: &StackSettings<'_>) -> anyhow::Result<Self> {
        let api_port = free_port()?;
        let api_url = format!("http://127.0.0.1:{api_port}");
        let database_url = crate::database::create(&s.services.postgres_url, s.prefix).await?;
        let mut metrics_urls = Vec::new();
        let mut metrics_addr = || -> anyhow::Result<String> {
            let addr = format!("127.0.0.1:{}", free_port()?);
            metrics_urls.push(format!("http://{addr}/metrics"));
            Ok(addr)
        };
        let api_binary = match s.api_binary {
            Some(path) => path.to_owned(),
            None => binary("api")?,
        };
        let mut api = Command::new(api_binary);
        common(&mut api, s);
        api.env("API_ADDR", format!("127.0.0.1:{api_port}"))
            .env("DATABASE_URL", database_url)
            .env("METRICS_ADDR", metrics_addr()?)
            .env("JWT_SECRET", "bench-jwt-secret-0123456789abcdef0123");
        if s.limits == ApiLimits::Off {
            // Every request comes from this machine: the per-address and per-network
            // limits would refuse a burst as one client's.
            api.env("IP_REQUESTS_PER_MINUTE", "0")
                .env("IP_NETWORK_REQUESTS_PER_MINUTE", "0")
                .env("RESEND_COOLDOWN_SECONDS", "0");
        }
        if let Some(secret) = s.webhook_secret {
            api.env("WATI_WEBHOOK_SECRET", secret);
        }
        if let Some(sms) = &s.sms {
            sms_shared(&mut api, sms, &api_url);
        }
        api.envs(s.api_env.iter().map(|(name, value)| (name, value)));
        let api = api.spawn().context("start the api")?;
        let mut workers = Vec::new();
        for _ in 0..s.workers {
            let mut worker = Command::new(binary("worker")?);
            common(&mut worker, s);
            worker
                .env("METRICS_ADDR", metrics_addr()?)
                .env("WATI_BASE_URL", s.wati_base_url)
                .env("WATI_API_KEY", crate::WATI_KEY);
            if let Some(concurrency) = s.worker_concurrency {
                worker.env("WORKER_CONCURRENCY", concurrency.to_string());
            }
            if let Some(sms) = &s.sms {
                sms_shared(&mut worker, sms, &api_url);
                worker
                    .env("TWILIO_BASE_URL", sms.twilio_base_url)
                    .env(
                        "TWILIO_ACCOUNT_SID",
                        wati_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
                    )
                    .env("TWILIO_FROM", TWILIO_FROM)
                    .env(
                        "FALLBACK_AFTER_SECONDS",
                        sms.fallback_after_seconds.to_string(),
                    );
            }
            workers.push(worker.spawn().context("start a worker")?);
        }
        let stack = Self {
            api_url,
            api_addr: std::net::SocketAddr::from(([127, 0, 0, 1], api_port)),
            metrics_urls,
            api,
            workers,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let ready = http.get(format!("{}/readyz", stack.api_url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(stack);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the api did not become ready")
    }

    /// Peak resident memory (VmHWM) of the api and of each worker, in MB.
    pub fn peak_rss_mb(&self) -> (f64, Vec<f64>) {
        let read = |child: &Child| -> f64 {
            std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
                .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
        };
        (read(&self.api), self.workers.iter().map(read).collect())
    }

    /// CPU seconds (user + system) used so far by the api and by each worker.
    pub fn cpu_seconds(&self) -> (f64, Vec<f64>) {
        let read =
            |child: &Child| (cpu_seconds_of(child.id()).unwrap_or(0.0) * 100.0).round() / 100.0;
        (read(&self.api), self.workers.iter().map(read).collect())
    }

    /// The api and workers that are no longer running (exited, or killed by someone).
    pub fn exited(&self) -> usize {
        std::iter::once(&self.api)
            .chain(&self.workers)
            .filter(|child| !running(child.id()))
            .count()
    }

    /// SIGTERM to every process, then wait for them.
    pub fn stop(mut self) {
        for child in std::iter::once(&self.api).chain(&self.workers) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in std::iter::once(&mut self.api).chain(&mut self.workers) {
            let _ = child.wait();
        }
    }
}

/// Whether process `pid` is there and not a zombie (one that exited and was not yet
/// waited for).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// CPU seconds (user + system) a process has used so far, if it is still there.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name: utime and stime are 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds the whole machine has been busy (every core, since boot), from the first
/// line of /proc/stat: user, nice, system, irq, softirq and steal.
pub fn cpu_seconds_machine() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum::<f64>();
    Some(busy / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds used so far by every process whose name is `name` (a server's backends,
/// like PostgreSQL's one process per connection).
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(cpu_seconds_of)
        .sum()
}

/// CPU seconds used so far by each process that works during the burst: where a burst's
/// work (the gateway's, and the stand-ins') lands on shared cores.
pub struct BurstCpu {
    api: f64,
    workers: f64,
    rabbitmq: f64,
    redis: f64,
    /// This process: the load generator, and the sandbox standing in for WATI and Twilio.
    bench: f64,
    /// The whole machine: what is not any of the above is someone else's (a build or a
    /// test on the same cores), and makes the run's rates incomparable.
    machine: f64,
}

impl BurstCpu {
    pub fn now(stack: &Stack) -> Self {
        let (api, workers) = stack.cpu_seconds();
        Self {
            api,
            workers: workers.iter().sum(),
            // Every RabbitMQ and Redis on the machine: idle ones (a local cluster) add
            // a few hundredths of a second.
            rabbitmq: cpu_seconds_named("beam.smp"),
            redis: cpu_seconds_named("redis-server"),
            bench: cpu_seconds_of(std::process::id()).unwrap_or(0.0),
            machine: cpu_seconds_machine().unwrap_or(0.0),
        }
    }

    pub fn until_now(&self, stack: &Stack) -> Value {
        let later = Self::now(stack);
        let spent = |before: f64, after: f64| ((after - before) * 100.0).round() / 100.0;
        let ours = [
            later.api - self.api,
            later.workers - self.workers,
            later.rabbitmq - self.rabbitmq,
            later.redis - self.redis,
            later.bench - self.bench,
        ]
        .iter()
        .sum::<f64>();
        json!({
            "api": spent(self.api, later.api),
            "workers": spent(self.workers, later.workers),
            "rabbitmq": spent(self.rabbitmq, later.rabbitmq),
            "redis": spent(self.redis, later.redis),
            "bench": spent(self.bench, later.bench),
            "others": spent(ours, later.machine - self.machine).max(0.0),
        })
    }
}
