//! Benchmark of the OTP gateway on this machine, against the local Redis and RabbitMQ:
//!
//! 1. `ceiling`: the api's send path without HTTP (its Redis script and confirmed
//!    publish, called as a library) at the intake concurrency;
//! 2. `intake`: N send-otp requests for N distinct phones over C connections to a
//!    running api (a real process, as are the workers);
//! 3. `delivery`: until the WATI sandbox (in this process) has received all N;
//! 4. `steady`: a fixed rate for a fixed time, and its accepted→received latency;
//! 5. `batched`: WATI enforcing its plan limit and a Meta message rate, a burst through
//!    v3 batches and, for comparison, through v1 (one call per code);
//! 6. `receipts`: a burst without, then with WATI's receipts posted to the webhook;
//! 7. `login`: verify-otp at a steady rate for delivered codes, first and returning
//!    logins, with their CPU in the api, PostgreSQL and Redis;
//! 8. `tokens`: signing and checking one access token with HS256, EdDSA and ES256;
//! 9. `reach`: the same UK phones, some not on WhatsApp, failed or never heard of, with
//!    WhatsApp only and then with the SMS fallback: who ends up with a code in hand;
//! 10. `attack`: a stranger trying to keep a phone's owner out of login, and a flood of
//!     new numbers from many networks while people log in, without and with the human
//!     check, at the product's default limits;
//!
//! then the peak RSS of the api and workers. One JSON line per stage on stdout.

mod attack;
mod batched;
mod ceiling;
mod load;
mod login;
mod phones;
mod reach;
mod receipts;
mod stack;
mod stats;
mod tokens;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;
use wati_sandbox::{Sandbox, SandboxConfig};

const OTP_SECRET: &str = "bench-otp-secret-0123456789abcdef0123";
/// Code life of the ceiling-to-steady stack.
pub(crate) const CODE_LIFE: Duration = Duration::from_secs(300);
const WATI_KEY: &str = "bench-wati-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stage {
    Ceiling,
    Intake,
    Delivery,
    Steady,
    Batched,
    Receipts,
    Login,
    Tokens,
    Reach,
    Attack,
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
    /// Jobs in flight per worker (WORKER_CONCURRENCY), and recipients per call
    /// (WATI_BATCH_MAX), of every stack but the batched stage's. Without it, the
    /// product's defaults: WATI_BATCH_MAX 1,000 and a worker holding twice that.
    #[arg(long)]
    worker_concurrency: Option<u16>,
    /// WATI_CALLS_PER_10S of the ceiling-to-steady stack (0: no limit).
    #[arg(long, default_value_t = 0)]
    calls_per_10s: u32,
    /// WHATSAPP_MESSAGES_PER_SECOND of the ceiling-to-steady stack (0: no limit).
    #[arg(long, default_value_t = 0)]
    messages_per_second: u32,
    /// Requests in the batched stage's v3 burst.
    #[arg(long, default_value_t = 50_000)]
    batched_requests: usize,
    /// Requests in the batched stage's v1 burst (the comparison).
    #[arg(long, default_value_t = 2_000)]
    batched_v1_requests: usize,
    /// Code life of the batched stage's v3 half, in seconds.
    #[arg(long, default_value_t = 300)]
    batched_ttl_seconds: u64,
    /// Code life of the v1 half: shorter, since v1 delivers about 10 codes a second.
    #[arg(long, default_value_t = 30)]
    batched_v1_ttl_seconds: u64,
    /// WATI's plan limit in the batched stage, enforced by the sandbox.
    #[arg(long, default_value_t = 100)]
    batched_calls_per_10s: u32,
    /// Meta's message rate in the batched stage, per sending number.
    #[arg(long, default_value_t = 1000)]
    batched_messages_per_second: u32,
    /// Sending numbers of the batched stage's pool run (WATI_CHANNEL_NUMBERS): with 2 or
    /// more, the v3 burst runs again from that many numbers, each at
    /// `--batched-messages-per-second`.
    #[arg(long, default_value_t = 0)]
    batched_numbers: u32,
    /// With a pool, the burst runs once more with the pool's first number degraded (its
    /// messages fail with 131048) this many seconds after the burst starts.
    #[arg(long)]
    batched_degrade_at_seconds: Option<u64>,
    /// Codes in each half of the receipts stage (without, then with receipts).
    #[arg(long, default_value_t = 20_000)]
    receipts_requests: usize,
    /// When the sandbox posts `delivered` after accepting a message, in ms.
    #[arg(long, default_value_t = 300)]
    receipts_delivered_after_ms: u64,
    /// When it posts `read`, in ms.
    #[arg(long, default_value_t = 1000)]
    receipts_read_after_ms: u64,
    /// Logins (distinct phones) in each round of the login stage.
    #[arg(long, default_value_t = 10_000)]
    login_requests: usize,
    /// Logins a second in the login stage.
    #[arg(long, default_value_t = 500)]
    login_rate: u32,
    /// Phones in the reach stage: the same phones (distinct UK mobiles) go through each
    /// half, WhatsApp only and with fallback, so that both meet the same fates.
    #[arg(long, default_value_t = 10_000)]
    reach_requests: usize,
    /// FALLBACK_AFTER_SECONDS of the reach stage's half with fallback.
    #[arg(long, default_value_t = 10)]
    reach_fallback_after_seconds: u64,
    /// The code's life (OTP_TTL_SECONDS) in the reach stage: the longest it waits.
    #[arg(long, default_value_t = 300)]
    reach_ttl_seconds: u64,
    /// Before each half's burst the reach stage waits, this long at most, for a second
    /// in which the machine is less than 10% busy.
    #[arg(long, default_value_t = 60)]
    reach_quiet_start_seconds: u64,
    /// The reach stage stops waiting once nothing has changed this long (at least the
    /// fallback timer and 5 s more): with WhatsApp only, a send without a receipt never
    /// settles.
    #[arg(long, default_value_t = 30)]
    reach_quiet_seconds: u64,
    /// Tokens signed and checked per algorithm in the tokens stage.
    #[arg(long, default_value_t = 20_000)]
    token_count: usize,
    /// Length of the attack stage's lockout part, in minutes (the product's windows are
    /// an hour long; 0 skips it).
    #[arg(long, default_value_t = 60)]
    attack_minutes: u64,
    /// Length of the attack stage's flood, in seconds (0 skips it).
    #[arg(long, default_value_t = 60)]
    attack_flood_seconds: u64,
    /// An api binary for the login stage instead of this build's: another build to
    /// compare against (one that kept users in Redis, for the cost of PostgreSQL).
    #[arg(long)]
    login_api_binary: Option<std::path::PathBuf>,
    /// Stages to run, comma-separated (`attack`, an hour of real time, only when named).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,intake,delivery,steady,batched,receipts,login,tokens,reach"
    )]
    stages: Vec<Stage>,
    /// RUST_LOG of the api and workers.
    #[arg(long, default_value = "warn")]
    log_level: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// `AMQP_QUEUE_TYPE` of the api and workers (`classic` for the numbers of a broker
    /// whose queues are classic).
    #[arg(long, value_enum, default_value = "quorum")]
    amqp_queue_type: otp_shared::amqp::QueueType,
    /// The PostgreSQL server (no database: each stack creates its own and drops it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres_url: String,
}

fn emit(line: &serde_json::Value) {
    println!("{line}");
}

/// Emits a stage's lines, noting their problems in `failures`.
fn emit_all(lines: Vec<serde_json::Value>, failures: &mut Vec<String>) {
    for line in lines {
        failures.extend(problems(&line));
        emit(&line);
    }
}

/// Problems that make a run fail: a benchmark that lost, duplicated or refused
/// requests measured something other than the gateway working.
fn problems(line: &serde_json::Value) -> Vec<String> {
    [
        "errors",
        "missing",
        "duplicates",
        "late",
        "wati_429s",
        "throughput_refusals_130429",
        "lost",
        "receipts_failed",
        "double_sms",
        "sms_callbacks_failed",
        "otp_status_disagreements",
        "extra_requests",
        "processes_exited",
    ]
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
    let (batched_count, batched_v1_count) = if run(Stage::Batched) {
        (args.batched_requests, args.batched_v1_requests)
    } else {
        (0, 0)
    };
    let receipts_count = if run(Stage::Receipts) {
        args.receipts_requests * 2
    } else {
        0
    };
    let login_count = if run(Stage::Login) {
        args.login_requests
    } else {
        0
    };
    let phones = phones::distinct(
        args.requests
            + steady_count
            + batched_count
            + batched_v1_count
            + receipts_count
            + login_count,
    );
    let (burst_phones, rest) = phones.split_at(args.requests);
    let (steady_phones, rest) = rest.split_at(steady_count);
    let (batched_phones, rest) = rest.split_at(batched_count);
    let (batched_v1_phones, rest) = rest.split_at(batched_v1_count);
    let (receipts_phones, login_phones) = rest.split_at(receipts_count);
    let services = stack::Services {
        redis_url: args.redis_url.clone(),
        amqp_url: args.amqp_url.clone(),
        amqp_queue_type: match args.amqp_queue_type {
            otp_shared::amqp::QueueType::Quorum => "quorum",
            otp_shared::amqp::QueueType::Classic => "classic",
        },
        postgres_url: args.postgres_url.clone(),
    };
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
            args.amqp_queue_type,
        )
        .await;
        cleanup::remove(&services, &ceiling_prefix).await;
        let line = result?;
        ceiling_rate = line["per_second"].as_f64();
        failures.extend(problems(&line));
        emit(&line);
    }

    if run(Stage::Tokens) {
        for line in tokens::run(args.token_count)? {
            emit(&line);
        }
    }

    if run(Stage::Batched) {
        failures.extend(
            run_batched(&args, &services, &prefix, batched_phones, batched_v1_phones).await?,
        );
    }
    if run(Stage::Receipts) {
        let settings = receipts::Settings {
            services: &services,
            prefix: &format!("{prefix}r"),
            log_level: &args.log_level,
            workers: args.workers,
            worker_concurrency: args.worker_concurrency,
            concurrency: args.concurrency,
            delivered_after: Duration::from_millis(args.receipts_delivered_after_ms),
            read_after: Duration::from_millis(args.receipts_read_after_ms),
        };
        emit_all(
            receipts::run(&settings, receipts_phones).await?,
            &mut failures,
        );
    }
    if run(Stage::Login) {
        let settings = login::Settings {
            services: &services,
            prefix: &format!("{prefix}l"),
            log_level: &args.log_level,
            workers: args.workers,
            worker_concurrency: args.worker_concurrency,
            concurrency: args.concurrency,
            rate: args.login_rate,
            api_binary: args.login_api_binary.as_deref(),
        };
        emit_all(login::run(&settings, login_phones).await?, &mut failures);
    }
    if run(Stage::Reach) {
        let settings = reach::Settings {
            services: &services,
            prefix: &format!("{prefix}w"),
            log_level: &args.log_level,
            workers: args.workers,
            worker_concurrency: args.worker_concurrency,
            concurrency: args.concurrency,
            delivered_after: Duration::from_millis(args.receipts_delivered_after_ms),
            read_after: Duration::from_millis(args.receipts_read_after_ms),
            fallback_after_seconds: args.reach_fallback_after_seconds,
            ttl_seconds: args.reach_ttl_seconds,
            quiet: Duration::from_secs(args.reach_quiet_seconds),
            quiet_start: Duration::from_secs(args.reach_quiet_start_seconds),
        };
        let phones = phones::uk_mobiles(args.reach_requests);
        anyhow::ensure!(
            phones.len() == args.reach_requests,
            "only {} valid UK mobiles for --reach-requests {}",
            phones.len(),
            args.reach_requests
        );
        emit_all(reach::run(&settings, &phones).await?, &mut failures);
    }
    if run(Stage::Attack) {
        let settings = attack::Settings {
            services: &services,
            prefix: &format!("{prefix}a"),
            log_level: &args.log_level,
            minutes: args.attack_minutes,
            flood_seconds: args.attack_flood_seconds,
        };
        emit_all(attack::run(&settings).await?, &mut failures);
    }
    let main_stages = [Stage::Intake, Stage::Delivery, Stage::Steady];
    if !main_stages.iter().any(|s| run(*s)) {
        return finish(failures);
    }

    let (sandbox, wati_base_url) =
        start_sandbox(Duration::from_millis(args.sandbox_latency_ms), 0).await?;
    let stack = stack::Stack::start(&stack::StackSettings {
        services: &services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &wati_base_url,
        workers: args.workers,
        worker_concurrency: args.worker_concurrency,
        log_level: &args.log_level,
        webhook_secret: None,
        sms: None,
        limits: stack::ApiLimits::Off,
        api_env: &[],
        budgets: stack::StackBudgets {
            api_version: "v3",
            calls_per_10s: args.calls_per_10s,
            messages_per_second: args.messages_per_second,
            // Calls carry at most what a worker holds.
            batch_max: args.worker_concurrency.map(u32::from),
            ttl_seconds: CODE_LIFE.as_secs(),
            numbers: 0,
        },
    })
    .await
    .context("start the api and workers")?;

    let mut report = |line: serde_json::Value| {
        failures.extend(problems(&line));
        emit(&line);
    };
    let outcome = async {
        if run(Stage::Intake) {
            let baseline = sandbox.accepted();
            let (mut line, responses) =
                load::burst(stack.api_addr, burst_phones, args.concurrency).await?;
            if let (Some(ceiling), Some(intake)) = (ceiling_rate, line["per_second"].as_f64()) {
                line["ratio_to_ceiling"] = json!((intake / ceiling * 100.0).round() / 100.0);
            }
            report(line);
            if run(Stage::Delivery) {
                let mut line =
                    load::delivery(&sandbox, &responses, "delivery", CODE_LIFE, baseline).await;
                line["sandbox_latency_ms"] = json!(args.sandbox_latency_ms);
                // Null: the worker's default.
                line["jobs_in_flight"] = json!(
                    args.worker_concurrency
                        .map(|jobs| args.workers * usize::from(jobs))
                );
                report(line);
            }
        }
        if run(Stage::Steady) {
            let baseline = sandbox.accepted();
            let (line, responses) = load::steady(
                stack.api_addr,
                steady_phones,
                args.steady_rate,
                args.steady_seconds,
                args.concurrency,
            )
            .await?;
            report(line);
            let mut line =
                load::delivery(&sandbox, &responses, "steady_delivery", CODE_LIFE, baseline).await;
            line["calls_per_10s"] = json!(args.calls_per_10s);
            line["messages_per_second"] = json!(args.messages_per_second);
            report(line);
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
    cleanup::remove(&services, &prefix).await;
    outcome?;
    finish(failures)
}

/// The run's result: an error naming every problem, if there was one.
fn finish(failures: Vec<String>) -> anyhow::Result<()> {
    if !failures.is_empty() {
        anyhow::bail!("the run had problems: {}", failures.join(", "));
    }
    Ok(())
}

/// Starts a WATI sandbox in this process with `latency` and a plan limit of
/// `calls_per_10s` (0: none); returns it and the base URL the workers use.
pub(crate) async fn start_sandbox(
    latency: Duration,
    calls_per_10s: u32,
) -> anyhow::Result<(Sandbox, String)> {
    let sandbox = Sandbox::new(SandboxConfig {
        api_key: WATI_KEY.into(),
        latency,
        calls_per_10s,
        ..SandboxConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let wati_base_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(wati_sandbox::serve(
        sandbox.clone(),
        listener,
        std::future::pending(),
    ));
    Ok((sandbox, wati_base_url))
}

/// The batched stage: v1 then v3 under the same limits; emits four lines and the
/// ratio of their delivery rates. Returns the problems it saw.
async fn run_batched(
    args: &Args,
    services: &stack::Services,
    prefix: &str,
    v3_phones: &[otp_api::phone::PhoneNumber],
    v1_phones: &[otp_api::phone::PhoneNumber],
) -> anyhow::Result<Vec<String>> {
    let settings = batched::Settings {
        services,
        prefix: &format!("{prefix}b"),
        log_level: &args.log_level,
        workers: args.workers,
        concurrency: args.concurrency,
        calls_per_10s: args.batched_calls_per_10s,
        messages_per_second: args.batched_messages_per_second,
        batch_max: 1000,
    };
    let mut failures = Vec::new();
    let (v1_intake, v1_delivery) = batched::run(
        &settings,
        &batched::Half {
            label: "batched_v1",
            prefix: "v1",
            api_version: "v1",
            phones: v1_phones,
            ttl_seconds: args.batched_v1_ttl_seconds,
            numbers: 0,
            degrade_at: None,
        },
    )
    .await?;
    // The v3 bursts: the same phones and code life, from `numbers` numbers (0: the
    // default channel).
    let v3_half = |label, prefix, numbers, degrade_at| batched::Half {
        label,
        prefix,
        api_version: "v3",
        phones: v3_phones,
        ttl_seconds: args.batched_ttl_seconds,
        numbers,
        degrade_at,
    };
    let (v3_intake, mut v3_delivery) =
        batched::run(&settings, &v3_half("batched", "v3", 0, None)).await?;
    let mut pool_lines = Vec::new();
    if args.batched_numbers >= 2 {
        // One number as fast as the whole pool: the same deliveries a second on these
        // shared cores, so its intake against the pool's is what the pool itself costs.
        let pool_rate = args.batched_numbers * args.batched_messages_per_second;
        let (one_fast_intake, one_fast_delivery) = batched::run(
            &batched::Settings {
                messages_per_second: pool_rate,
                ..settings
            },
            &v3_half("batched_one_fast", "onefast", 0, None),
        )
        .await?;
        pool_lines.push(one_fast_intake.clone());
        pool_lines.push(one_fast_delivery);
        let runs = [
            ("batched_pool", "pool", None),
            (
                "batched_degraded",
                "degraded",
                args.batched_degrade_at_seconds.map(Duration::from_secs),
            ),
        ];
        for (label, prefix, degrade_at) in runs {
            if label == "batched_degraded" && degrade_at.is_none() {
                continue;
            }
            let (mut intake, mut delivery) = batched::run(
                &settings,
                &v3_half(label, prefix, args.batched_numbers, degrade_at),
            )
            .await?;
            if let (Some(pool), Some(one)) = (
                delivery["per_second"].as_f64(),
                v3_delivery["per_second"].as_f64(),
            ) {
                delivery["times_one_number"] = json!(stats::ratio(pool, one));
                let ceiling = f64::from(args.batched_numbers * args.batched_messages_per_second);
                delivery["share_of_ceiling"] = json!(stats::ratio(pool, ceiling));
            }
            let pool_intake = intake["per_second"].as_f64();
            let ratio = |base: &serde_json::Value| {
                pool_intake
                    .zip(base["per_second"].as_f64())
                    .map(|(pool, base)| stats::ratio(pool, base))
            };
            intake["over_one_number"] = json!(ratio(&v3_intake));
            intake["over_one_number_at_the_pool_rate"] = json!(ratio(&one_fast_intake));
            intake["one_number_at_the_pool_rate_per_second"] =
                one_fast_intake["per_second"].clone();
            pool_lines.push(intake);
            pool_lines.push(delivery);
        }
    }
    if let (Some(v3), Some(v1)) = (
        v3_delivery["per_second"].as_f64(),
        v1_delivery["per_second"].as_f64(),
    ) {
        v3_delivery["times_v1"] = json!((v3 / v1.max(1e-9) * 10.0).round() / 10.0);
    }
    for line in [v1_intake, v1_delivery, v3_intake, v3_delivery]
        .into_iter()
        .chain(pool_lines)
    {
        failures.extend(problems(&line));
        emit(&line);
    }
    Ok(failures)
}

mod cleanup {
    //! Removes a run's keys, queues and database: the shared services outlive every run.

    use crate::stack::Services;

    pub async fn remove(services: &Services, prefix: &str) {
        // Node by node: a cluster's keys are spread over its masters (a replica refuses
        // the unlink; its master does it), and one command may not span slots there.
        let cluster = services.redis_url.contains(',');
        for node in services.redis_url.split(',') {
            let Ok(mut redis) = otp_shared::redis::conn::connect_node(node).await else {
                continue;
            };
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
                for keys in keys.chunks(if cluster { 1 } else { 10_000 }) {
                    let _: redis::RedisResult<()> =
                        redis::cmd("UNLINK").arg(keys).query_async(&mut redis).await;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if let Ok(conn) = otp_shared::amqp::connect(&services.amqp_url, "otp-bench-cleanup").await {
            let queues = otp_shared::amqp::QueueNames::new(prefix);
            if let Ok(channel) = conn.create_channel().await {
                for name in queues.all() {
                    let _ = channel
                        .queue_delete(name.as_str().into(), Default::default())
                        .await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
        crate::database::drop(&services.postgres_url, prefix).await;
    }
}

mod database {
    //! Each stack's own PostgreSQL database, named like its prefix.

    use anyhow::Context;
    use sqlx::Connection;

    /// `CREATE`/`DROP DATABASE` cannot take a bound name; a prefix is lowercase letters
    /// and digits, checked here.
    fn statement(sql: &str, name: &str) -> anyhow::Result<sqlx::AssertSqlSafe<String>> {
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "not a database name: {name:?}"
        );
        Ok(sqlx::AssertSqlSafe(sql.replace("{name}", name)))
    }

    async fn admin(server_url: &str) -> anyhow::Result<sqlx::PgConnection> {
        let url = format!("{server_url}/postgres");
        sqlx::PgConnection::connect(&url)
            .await
            .with_context(|| format!("PostgreSQL at {url}"))
    }

    /// Creates the database `name` on the server; returns its URL.
    pub async fn create(server_url: &str, name: &str) -> anyhow::Result<String> {
        let mut conn = admin(server_url).await?;
        sqlx::query(statement("CREATE DATABASE {name}", name)?)
            .execute(&mut conn)
            .await
            .with_context(|| format!("create the database {name}"))?;
        let _ = conn.close().await;
        Ok(format!("{server_url}/{name}"))
    }

    /// Drops the database `name` if it is there, closing whatever is still connected.
    pub async fn drop(server_url: &str, name: &str) {
        let Ok(statement) = statement("DROP DATABASE IF EXISTS {name} WITH (FORCE)", name) else {
            return;
        };
        if let Ok(mut conn) = admin(server_url).await {
            let _ = sqlx::query(statement).execute(&mut conn).await;
            let _ = conn.close().await;
        }
    }
}
