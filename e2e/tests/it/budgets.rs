//! The WATI budgets, shared by all workers through Redis: WATI's call limit holds
//! across two workers with the sandbox enforcing it (it never answers 429), Meta's
//! message rate holds across two workers, and a send whose code would expire waiting
//! for budget ends `expired` without a call.

use std::collections::BTreeSet;

use otp_e2e::{DEADLINE, TestEnv, budgets, busiest_window, eventually};
use otp_shared::budget::{Budgets, WatiApiVersion};
use wati_sandbox::CallRecord;

fn phone(n: u32) -> String {
    format!("9198765432{n:02}")
}

/// Two workers with `budgets`, each calling WATI through its own path (`/w1`, `/w2`)
/// so that the sandbox can tell their calls apart; returns once both consume.
async fn two_workers(env: &TestEnv, budgets: Budgets) -> [otp_e2e::Running; 2] {
    let worker = |path: &str| {
        let mut config = env.worker_config();
        config.common.budgets = budgets.clone();
        config.wati.base_url = format!("{}{path}", env.sandbox_url);
        config
    };
    let first = env.start_worker_with(worker("/w1")).await;
    let second = env.start_worker_with(worker("/w2")).await;
    // Both consume before any job is published, so that RabbitMQ spreads the jobs.
    eventually("two consumers on the send queue", DEADLINE, || async {
        let queue = env.queue_counts(&env.queues().send).await?;
        (queue.consumers == 2).then_some(())
    })
    .await;
    [first, second]
}

/// The path prefixes the calls came through.
fn callers(log: &[CallRecord]) -> BTreeSet<&str> {
    log.iter().map(|c| c.path_prefix.as_str()).collect()
}

#[tokio::test]
async fn the_call_budget_holds_across_two_workers_and_wati_never_answers_429() {
    // WATI allows 4 calls in any 10 s; the workers space theirs 2.56 s apart.
    let mut env = TestEnv::with_wati_limit(4).await;
    let budgets = budgets(WatiApiVersion::V3, 4, 0, 32);
    let mut api_config = env.api_config();
    api_config.common.budgets = budgets.clone();
    let _api = env.start_api_with(api_config).await;
    let workers = two_workers(&env, budgets).await;

    // Twelve sends a few hundred ms apart: one call each would be 12 calls in 4 s.
    let mut request_ids = Vec::new();
    for n in 0..12 {
        request_ids.push(env.send_accepted(&phone(n)).await);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    for request_id in &request_ids {
        env.wait_for_status(request_id, "sent").await;
    }
    for worker in workers {
        worker.stop().await;
    }

    assert_eq!(env.sandbox.rate_limited(), 0, "WATI answered 429");
    let log = env.sandbox.call_log();
    // Each worker delivers only the jobs it holds, and RabbitMQ gave both some.
    assert_eq!(callers(&log), BTreeSet::from(["/w1", "/w2"]));
    assert!(
        log.len() < 12,
        "the sends shared calls: {} calls",
        log.len()
    );
    assert!(busiest_window(&log, 10_000, |_| 1) <= 4);
    for pair in log.windows(2) {
        let gap = pair[1].received_at_ms - pair[0].received_at_ms;
        assert!(gap >= 2_000, "two calls {gap} ms apart");
    }
    let delivered: usize = log
        .iter()
        .filter(|c| c.status == 200)
        .map(|c| c.recipients.len())
        .sum();
    assert_eq!(delivered, 12);
}

#[tokio::test]
async fn the_message_budget_holds_across_two_workers() {
    let mut env = TestEnv::new().await;
    let budgets = budgets(WatiApiVersion::V3, 0, 5, 32);
    let mut api_config = env.api_config();
    api_config.common.budgets = budgets.clone();
    let _api = env.start_api_with(api_config).await;
    let workers = two_workers(&env, budgets).await;
    let mut request_ids = Vec::new();
    for n in 0..20 {
        request_ids.push(env.send_accepted(&phone(n)).await);
    }
    for request_id in &request_ids {
        env.wait_for_status(request_id, "sent").await;
    }
    for worker in workers {
        worker.stop().await;
    }

    let log = env.sandbox.call_log();
    assert_eq!(callers(&log), BTreeSet::from(["/w1", "/w2"]));
    // Five recipients a second: the 20 span about three seconds, and no window of
    // 800 ms (a second, less the way from Redis to the sandbox) holds more than five.
    let span = log.last().map_or(0, |c| c.received_at_ms) - log[0].received_at_ms;
    assert!(span >= 2_800, "20 recipients within {span} ms");
    assert!(busiest_window(&log, 800, |c| c.recipients.len()) <= 5);
    assert_eq!(log.iter().map(|c| c.recipients.len()).sum::<usize>(), 20);
}

#[tokio::test]
async fn a_send_whose_code_expires_while_waiting_for_budget_never_calls_wati() {
    let mut env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.common.otp_ttl = std::time::Duration::from_secs(2);
    // Admission off, so that more is queued than the workers' budget can deliver.
    let _api = env.start_api_with(api_config).await;
    let mut request_ids = Vec::new();
    for n in 0..6 {
        request_ids.push(env.send_accepted(&phone(n)).await);
    }
    let mut config = env.worker_config();
    config.common.budgets = budgets(WatiApiVersion::V1, 10, 0, 1);
    config.wati.api_version = WatiApiVersion::V1;
    let _worker = env.start_worker_with(config).await;
    let mut expired = 0;
    for request_id in &request_ids {
        let status = eventually("a final status", DEADLINE, || async {
            let (_, body) = env
                .get(&format!("/api/auth/otp-status/{request_id}"), None)
                .await;
            matches!(body["status"].as_str(), Some("sent" | "expired")).then_some(body)
        })
        .await;
        if status["status"] == "expired" {
            assert_eq!(status["attempts"], 0, "an expired send never called WATI");
            assert_eq!(status["reason"], "Failed to send OTP");
            expired += 1;
        }
    }
    // One call a second and two seconds of life: at most 2 or 3 can go out, and the
    // first does.
    assert!(expired >= 3, "only {expired} of 6 expired");
    assert!(expired <= 5, "none was sent");
    let calls: usize = (0..6).map(|n| env.sandbox.calls(&phone(n)).len()).sum();
    assert_eq!(calls, 6 - expired);
}
