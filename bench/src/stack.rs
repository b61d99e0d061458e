//! Starts the api and the workers as real processes (the release binaries next to this
//! one), each stack on its own key prefix, queues and PostgreSQL database, so that their
//! memory and CPU can be read, and stops them and removes what they made at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

pub struct Stack {
    pub api_url: String,
    pub api_addr: std::net::SocketAddr,
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
}

/// The WATI budgets and code life both processes get.
#[derive(Clone, Copy, Debug)]
pub struct StackBudgets {
    /// `v1` or `v3`.
    pub api_version: &'static str,
    pub calls_per_10s: u32,
    pub messages_per_second: u32,
    pub batch_max: u32,
    pub ttl_seconds: u64,
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
        .env("WATI_BATCH_MAX", s.budgets.batch_max.to_string())
        .env("OTP_TTL_SECONDS", s.budgets.ttl_seconds.to_string())
        .env("RUST_LOG", s.log_level)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
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
        let database_url = crate::database::create(&s.services.postgres_url, s.prefix).await?;
        let api_binary = match s.api_binary {
            Some(path) => path.to_owned(),
            None => binary("api")?,
        };
        let mut api = Command::new(api_binary);
        common(&mut api, s);
        api.env("API_ADDR", format!("127.0.0.1:{api_port}"))
            .env("DATABASE_URL", database_url)
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()?))
            .env("JWT_SECRET", "bench-jwt-secret-0123456789abcdef0123")
            .env("IP_REQUESTS_PER_MINUTE", "0")
            .env("RESEND_COOLDOWN_SECONDS", "0");
        if let Some(secret) = s.webhook_secret {
            api.env("WATI_WEBHOOK_SECRET", secret);
        }
        let api = api.spawn().context("start the api")?;
        let mut workers = Vec::new();
        for _ in 0..s.workers {
            let mut worker = Command::new(binary("worker")?);
            common(&mut worker, s);
            worker
                .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()?))
                .env("WATI_BASE_URL", s.wati_base_url)
                .env("WATI_API_KEY", crate::WATI_KEY);
            if let Some(concurrency) = s.worker_concurrency {
                worker.env("WORKER_CONCURRENCY", concurrency.to_string());
            }
            workers.push(worker.spawn().context("start a worker")?);
        }
        let stack = Self {
            api_url: format!("http://127.0.0.1:{api_port}"),
            api_addr: std::net::SocketAddr::from(([127, 0, 0, 1], api_port)),
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

/// CPU seconds (user + system) a process has used so far, if it is still there.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name: utime and stime are 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SECOND)
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
