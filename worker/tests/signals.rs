//! The worker binary under signals: killed with SIGKILL mid-call it loses no job (and
//! its code goes out within seconds), stopped with SIGSTOP it holds no code past its
//! expiry, and on SIGTERM it drains and exits within its grace period.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use otp_e2e::{DEADLINE, TestEnv};
use wati_sandbox::ScriptedReply;

const PHONE: &str = "919876543210";

/// Kills the child when dropped, so a failing test leaves no worker behind.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(env: &TestEnv, grace_seconds: u64) -> Worker {
    spawn_worker_with(env, grace_seconds, &[])
}

/// [`spawn_worker`] with more settings.
fn spawn_worker_with(env: &TestEnv, grace_seconds: u64, settings: &[(&str, &str)]) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("REDIS_URL", otp_e2e::REDIS_URL)
        .env("AMQP_URL", otp_e2e::AMQP_URL)
        .env("KEY_PREFIX", &env.prefix)
        .env("QUEUE_PREFIX", &env.prefix)
        .env("OTP_SECRET", otp_e2e::OTP_SECRET)
        .env("WATI_BASE_URL", format!("{}/12345", env.sandbox_url))
        .env("WATI_API_KEY", otp_e2e::WATI_KEY)
        .env("WATI_CALLS_PER_10S", "0")
        .env("WHATSAPP_MESSAGES_PER_SECOND", "0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        // Short, so that a hanging call ends soon.
        .env("WATI_TIMEOUT_MS", "2000")
        .env("RETRY_BASE_DELAY_MS", "50")
        .env("SHUTDOWN_GRACE_SECONDS", grace_seconds.to_string())
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker binary");
    Worker(child)
}

fn signal(worker: &Worker, name: &str) {
    let status = Command::new("kill")
        .args([name, &worker.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits for the process to exit; its exit status, or `None` after `deadline`.
async fn exited_within(
    worker: &mut Worker,
    deadline: Duration,
) -> Option<std::process::ExitStatus> {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = worker.0.try_wait() {
            return Some(status);
        }
        if tokio::time::Instant::now() >= give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worker_killed_mid_call_loses_no_job() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    // The first call hangs and then fails, so only a second worker can deliver.
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            status: Some(500),
            delay_ms: Some(3000),
            ..ScriptedReply::default()
        }],
    );
    let mut first = spawn_worker(&env, 30);
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sending").await;
    // The first worker holds the job; a second is up before the kill, as in a
    // deployment of several.
    let _second = spawn_worker(&env, 30);
    let send_queue = env.queues().send;
    otp_e2e::eventually("two consumers", DEADLINE, || async {
        env.queue_counts(&send_queue)
            .await
            .filter(|c| c.consumers == 2)
            .map(drop)
    })
    .await;
    let killed = std::time::Instant::now();
    signal(&first, "-KILL");
    assert!(exited_within(&mut first, DEADLINE).await.is_some());

    let messages = env.wait_for_messages(PHONE, 1).await;
    let late = killed.elapsed();
    env.wait_for_status(&request_id, "sent").await;
    assert_eq!(messages.len(), 1);
    // The other worker takes the job once the dead one's 4 s lease lapses, waiting on
    // it rather than handing the job back three times first (it came 14 to 15 s after
    // the kill with a 12 s lease and those returns).
    eprintln!("the killed worker's code reached WATI {late:?} after the kill");
    assert!(late < Duration::from_secs(8), "{late:?}");
    let (status, _) = env.verify(PHONE, &messages[0].code).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_drains_the_job_in_flight_and_exits() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            delay_ms: Some(1000),
            ..ScriptedReply::default()
        }],
    );
    let mut worker = spawn_worker(&env, 30);
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sending").await;
    signal(&worker, "-TERM");
    let exit = exited_within(&mut worker, Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    env.wait_for_status(&request_id, "sent").await;
    assert_eq!(env.sandbox.messages(PHONE).len(), 1);
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_and_the_job_goes_back_to_the_queue() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            status: Some(500),
            delay_ms: Some(8000),
            ..ScriptedReply::default()
        }],
    );
    let mut worker = spawn_worker(&env, 1);
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sending").await;
    let stopping = std::time::Instant::now();
    signal(&worker, "-TERM");
    let exit = exited_within(&mut worker, Duration::from_secs(6)).await;
    assert!(
        exit.is_some(),
        "still running 6 s after SIGTERM with a 1 s grace"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    // The unfinished job was not acked: another worker delivers it.
    let _next = spawn_worker(&env, 30);
    env.wait_for_status(&request_id, "sent").await;
}

#[tokio::test]
async fn a_worker_stopped_longer_than_a_code_lives_holds_no_code_past_its_expiry() {
    const LIFE: &str = "30";
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.common.otp_ttl = Duration::from_secs(30);
    let _api = env.start_api_with(config).await;
    let stalled = spawn_worker_with(&env, 30, &[("OTP_TTL_SECONDS", LIFE)]);
    let _healthy = spawn_worker_with(&env, 30, &[("OTP_TTL_SECONDS", LIFE)]);
    let send_queue = env.queues().send;
    otp_e2e::eventually("two consumers", DEADLINE, || async {
        env.queue_counts(&send_queue)
            .await
            .filter(|c| c.consumers == 2)
            .map(drop)
    })
    .await;
    // Stopped (a frozen VM, swap, SIGSTOP): the broker still hands it its share.
    signal(&stalled, "-STOP");
    let phones: Vec<String> = (0..40).map(|n| format!("9198765{n:05}")).collect();
    let mut sent_at = Vec::new();
    for phone in &phones {
        env.send_accepted(phone).await;
        sent_at.push(otp_shared::now_ms());
    }
    // Every code arrives before it expires, though the stop outlasts it: the broker
    // notices the stalled worker within two 5 s heartbeats and gives its jobs to the
    // other. (At RabbitMQ's 60 s heartbeat, half of them sat in the stopped worker.)
    let waits: Vec<u64> = otp_e2e::eventually("every code", Duration::from_secs(30), || async {
        let mut waits = Vec::new();
        for (phone, sent) in phones.iter().zip(&sent_at) {
            let message = env.sandbox.messages(phone).into_iter().next()?;
            waits.push(message.received_at_ms.saturating_sub(*sent));
        }
        Some(waits)
    })
    .await;
    signal(&stalled, "-CONT");
    let mut sorted = waits.clone();
    sorted.sort_unstable();
    let p99 = sorted[(sorted.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "202 to WATI with a worker stopped: p50 {} ms, p99 {p99} ms",
        sorted[sorted.len() / 2]
    );
    assert!(
        waits.iter().all(|w| *w < 30_000),
        "every code reached WATI inside its 30 s life: {waits:?}"
    );
}

#[tokio::test]
async fn a_worker_killed_while_it_posts_an_event_loses_no_event() {
    use otp_e2e::app_receiver::{Answer, AppReceiver};
    let receiver = AppReceiver::start().await;
    // The first post hangs: the worker is killed while it waits for the app.
    receiver.script(&[Answer::Hang(Duration::from_secs(30))]);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let events = [
        ("APP_WEBHOOK_URL", receiver.url.as_str()),
        ("APP_WEBHOOK_SECRET", secret),
        ("APP_WEBHOOK_EVENTS", "otp.sent"),
    ];
    let mut env = TestEnv::new().await;
    let config = env.api_config_with(&[
        "--app-webhook-url",
        &receiver.url,
        "--app-webhook-secret",
        secret,
        "--app-webhook-events",
        "otp.sent",
    ]);
    let _api = env.start_api_with(config).await;
    let mut first = spawn_worker_with(&env, 30, &events);
    env.send_accepted(PHONE).await;
    otp_e2e::eventually("the first post, hanging", DEADLINE, || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    signal(&first, "-KILL");
    assert!(exited_within(&mut first, DEADLINE).await.is_some());
    // The event was taken but never acked: another worker posts it, with the same id.
    let _second = spawn_worker_with(&env, 30, &events);
    let posts = otp_e2e::eventually("the event posted again", DEADLINE, || async {
        let posts = receiver.received();
        (posts.len() >= 2).then_some(posts)
    })
    .await;
    assert_eq!(posts[0].id, posts[1].id);
    assert_eq!(posts[1].json()["type"], "otp.sent");
}
