//! Benchmark of the OTP gateway on this machine, against the local Redis and RabbitMQ:
//!
//! 1. `ceiling`: the api's send path without HTTP (its Redis script and confirmed
//!    publish, called as a library) at the intake concurrency;
//! 2. `intake`: N send-otp requests for N distinct phones over C connections to a
//!    running api (a real process, as are the workers);
//! 3. `delivery`: until the WATI sandbox (in this process) has received all N;
//! 4. `steady`: a fixed rate for a fixed time, and its accepted→received latency;
//!
//! then the peak RSS of the api and workers. One JSON line per stage on stdout.

mod ceiling;
mod http1;
mod load;
mod phones;
mod stack;
mod stats;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use wati_sandbox::{Sandbox, SandboxConfig};

const OTP_SECRET: &str = "bench-otp-secret-0123456789abcdef0123";
const WATI_KEY: &str = "bench-wati-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stage {
    Ceiling,
    Intake,
    Delivery,
    Steady,
}

/// Measures the OTP gateway: ceiling, burst intake, delivery, steady load, memory.
#[derive(Parser, Debug)]
#[command(name = "bench", about)]
struct Args {
    /// Requests in the burst (intake and delivery), one distinct phone each.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Concurrent connections of the burst, and tasks of the ceiling.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second of the steady stage.
    #[arg(long, default_value_t = 1000)]
    steady_rate: u32,
    /// Length of the steady stage, in seconds.
    #[arg(long, default_value_t = 30)]
    steady_seconds: u64,
    /// Delay of every sandbox answer (WATI's latency), in milliseconds.
    #[arg(long, default_value_t = 0)]
    sandbox_latency_ms: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Jobs in flight per worker (WORKER_CONCURRENCY).
    #[arg(long, default_value_t = 64)]
    worker_concurrency: u16,
    /// Stages to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,intake,delivery,steady"
    )]
    stages: Vec<Stage>,
    /// RUST_LOG of the api and workers.
    #[arg(long, default_value = "warn")]
    log_level: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
}

fn emit(line: &serde_json::Value) {
    println!("{line}");
}

/// Problems that make a run fail: a benchmark that lost, duplicated or refused
/// requests measured something other than the gateway working.
fn problems(line: &serde_json::Value) -> Vec<String> {
    ["errors", "missing", "duplicates"]
        .iter()
        .filter_map(|field| {
            let n = line[*field].as_u64().unwrap_or(0);
            (n > 0).then(|| format!("{}: {n} {field}", line["stage"].as_str().unwrap_or("?")))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = |s: Stage| args.stages.contains(&s);
    let steady_count = if run(Stage::Steady) {
        (u64::from(args.steady_rate) * args.steady_seconds) as usize
    } else {
        0
    };
    let phones = phones::distinct(args.requests + steady_count);
    let (burst_phones, steady_phones) = phones.split_at(args.requests);
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    emit(&json!({
        "stage": "meta",
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "unix_time": otp_shared::now_ms() / 1000,
        "prefix": prefix,
    }));

    let mut failures = Vec::new();
    let mut ceiling_rate = None;
    if run(Stage::Ceiling) {
        let ceiling_prefix = format!("{prefix}c");
        let result = ceiling::run(
            &args.redis_url,
            &args.amqp_url,
            &ceiling_prefix,
            burst_phones,
            args.concurrency,
        )
        .await;
        cleanup::remove(&args.redis_url, &args.amqp_url, &ceiling_prefix).await;
        let line = result?;
        ceiling_rate = line["per_second"].as_f64();
        failures.extend(problems(&line));
        emit(&line);
    }

    let sandbox = Sandbox::new(SandboxConfig {
        api_key: WATI_KEY.into(),
        template_name: "login_otp".into(),
        latency: Duration::from_millis(args.sandbox_latency_ms),
        calls_per_10s: 0,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let wati_base_url = format!("http://{}/bench", listener.local_addr()?);
    tokio::spawn(wati_sandbox::serve(
        sandbox.clone(),
        listener,
        std::future::pending(),
    ));

    let stack = stack::Stack::start(&stack::StackSettings {
        redis_url: &args.redis_url,
        amqp_url: &args.amqp_url,
        prefix: &prefix,
        wati_base_url: &wati_base_url,
        workers: args.workers,
        worker_concurrency: args.worker_concurrency,
        log_level: &args.log_level,
    })
    .await
    .context("start the api and workers")?;

    let mut report = |line: serde_json::Value| {
        failures.extend(problems(&line));
        emit(&line);
    };
    let outcome = async {
        if run(Stage::Intake) {
            let (mut line, responses) =
                load::burst(stack.api_addr, burst_phones, args.concurrency).await?;
            if let (Some(ceiling), Some(intake)) = (ceiling_rate, line["per_second"].as_f64()) {
                line["ratio_to_ceiling"] = json!((intake / ceiling * 100.0).round() / 100.0);
            }
            report(line);
            if run(Stage::Delivery) {
                let mut line = load::delivery(&sandbox, &responses, "delivery").await;
                line["sandbox_latency_ms"] = json!(args.sandbox_latency_ms);
                line["jobs_in_flight"] = json!(args.workers * usize::from(args.worker_concurrency));
                report(line);
            }
        }
        if run(Stage::Steady) {
            let (line, responses) = load::steady(
                stack.api_addr,
                steady_phones,
                args.steady_rate,
                args.steady_seconds,
                args.concurrency,
            )
            .await?;
            report(line);
            report(load::delivery(&sandbox, &responses, "steady_delivery").await);
        }
        let (api_mb, worker_mb) = stack.peak_rss_mb();
        let (api_cpu, worker_cpu) = stack.cpu_seconds();
        emit(&json!({
            "stage": "resources",
            "api_peak_rss_mb": api_mb,
            "worker_peak_rss_mb": worker_mb,
            "api_cpu_seconds": api_cpu,
            "worker_cpu_seconds": worker_cpu,
        }));
        anyhow::Ok(())
    }
    .await;
    stack.stop();
    cleanup::remove(&args.redis_url, &args.amqp_url, &prefix).await;
    outcome?;
    if !failures.is_empty() {
        anyhow::bail!("the run had problems: {}", failures.join(", "));
    }
    Ok(())
}

mod cleanup {
    //! Removes a run's keys and queues: the shared services outlive every run.

    pub async fn remove(redis_url: &str, amqp_url: &str, prefix: &str) {
        if let Ok(mut redis) = otp_shared::redis_conn::connect(redis_url).await {
            let mut cursor: u64 = 0;
            loop {
                let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}:*"))
                    .arg("COUNT")
                    .arg(10_000)
                    .query_async(&mut redis)
                    .await
                else {
                    break;
                };
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut redis)
                        .await;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if let Ok(conn) = otp_shared::amqp::connect(amqp_url, "otp-bench-cleanup").await {
            let queues = otp_shared::keys::QueueNames::new(prefix);
            if let Ok(channel) = conn.create_channel().await {
                for name in [queues.send, queues.dead] {
                    let _ = channel
                        .queue_delete(name.as_str().into(), Default::default())
                        .await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
    }
}
