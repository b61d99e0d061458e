//! A 202 is a promise: a burst far above what the WATI budgets can deliver within a
//! code's life is admitted only up to that capacity, at once and atomically across
//! requests, and every admitted code reaches WATI before it expires. The rest get 503
//! with Retry-After, and room comes back as sends are handed over.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::{Budgets, Capacity, WatiApiVersion};
use serde_json::{Value, json};

fn phone(n: usize) -> String {
    format!("91987654{n:04}")
}

/// One answer of the burst.
struct Answer {
    phone: String,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
    /// When the answer came back, Unix ms: the code was stored before it.
    answered_at_ms: u64,
}

/// `count` send-otp requests for distinct phones, 64 at a time; how long they took.
async fn burst(env: &TestEnv, count: usize) -> (Vec<Answer>, Duration) {
    let started = Instant::now();
    let answers = futures_util::stream::iter(0..count)
        .map(|n| async move {
            let response = env
                .http
                .post(format!("{}/api/auth/send-otp", env.api_url))
                .json(&json!({ "phone": phone(n) }))
                .send()
                .await
                .expect("api reachable");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            Answer {
                phone: phone(n),
                status,
                retry_after,
                answered_at_ms: otp_shared::now_ms(),
                body: response.json().await.unwrap_or(Value::Null),
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    (answers, started.elapsed())
}

fn sends(budgets: &Budgets, ttl_seconds: u64) -> usize {
    match budgets.capacity(Duration::from_secs(ttl_seconds)) {
        Capacity::Sends { sends, .. } => sends as usize,
        Capacity::Unlimited => panic!("these tests need a budget"),
    }
}

/// Runs the burst with no worker (so nothing is handed over while it arrives), checks
/// that exactly the capacity was admitted and the rest refused properly, then starts a
/// worker and checks that every admitted code reached WATI before it expired.
async fn burst_then_deliver(budgets: Budgets, ttl_seconds: u64, requests: usize) {
    let mut env = TestEnv::with_wati_limit(budgets.calls_per_10s).await;
    let mut api_config = env.api_config();
    api_config.common.otp_ttl_seconds = ttl_seconds;
    api_config.common.budgets = budgets;
    let _api = env.start_api_with(api_config).await;
    let capacity = sends(&budgets, ttl_seconds);
    assert!(capacity * 3 < requests, "the burst is far above capacity");

    let (answers, took) = burst(&env, requests).await;
    assert!(
        took < Duration::from_secs(1),
        "the burst must arrive in well under a second to test admission, took {took:?}"
    );
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    assert_eq!(admitted.len(), capacity, "202s up to capacity, no more");
    for refused in answers.iter().filter(|a| a.status != 202) {
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.body["code"], "UNAVAILABLE");
        assert_eq!(refused.body["message"], "Failed to send OTP");
        let wait = refused.retry_after.expect("Retry-After on a 503");
        assert!(wait >= 1 && wait <= ttl_seconds * 4, "Retry-After {wait}");
        assert_eq!(refused.body["retryAfterSeconds"], wait);
    }

    let mut worker_config = env.worker_config();
    worker_config.common.otp_ttl_seconds = ttl_seconds;
    worker_config.common.budgets = budgets;
    worker_config.wati.api_version = budgets.api_version;
    worker_config.concurrency = u16::try_from(budgets.recipients_per_call * 2).expect("fits");
    let _worker = env.start_worker_with(worker_config).await;
    for answer in &admitted {
        let messages = env.wait_for_messages(&answer.phone, 1).await;
        assert_eq!(messages.len(), 1, "{}: delivered once", answer.phone);
        let expiry = answer.answered_at_ms + ttl_seconds * 1000;
        assert!(
            messages[0].received_at_ms < expiry,
            "{} reached WATI {} ms after its code expired",
            answer.phone,
            messages[0].received_at_ms - expiry
        );
        let request_id = answer.body["requestId"].as_str().expect("a request id");
        env.wait_for_status(request_id, "sent").await;
    }
    assert_eq!(env.sandbox.rate_limited(), 0, "WATI never answered 429");
    for refused in answers.iter().filter(|a| a.status != 202) {
        assert!(env.sandbox.messages(&refused.phone).is_empty());
    }
}

#[tokio::test]
async fn a_burst_far_above_the_message_budget_is_admitted_only_as_far_as_it_delivers_in_time() {
    // 10 messages a second and 10 s codes: 80 sends fit (a second's margin, and the
    // message window of the second before).
    let budgets = budgets(WatiApiVersion::V3, 100, 10, 1000);
    assert_eq!(sends(&budgets, 10), 80);
    burst_then_deliver(budgets, 10, 400).await;
}

#[tokio::test]
async fn in_v1_mode_the_call_budget_bounds_admission_the_same_way() {
    // One call per code, 20 calls per 10 s (one every 512.5 ms), 6 s codes: 8 fit.
    let budgets = budgets(WatiApiVersion::V1, 20, 0, 1000);
    assert_eq!(sends(&budgets, 6), 8);
    burst_then_deliver(budgets, 6, 60).await;
}

#[tokio::test]
async fn room_comes_back_as_sends_are_handed_to_wati() {
    let mut env = TestEnv::new().await;
    let budgets = budgets(WatiApiVersion::V1, 20, 0, 1000);
    let mut api_config = env.api_config();
    api_config.common.otp_ttl_seconds = 6;
    api_config.common.budgets = budgets;
    let _api = env.start_api_with(api_config).await;
    let (answers, _) = burst(&env, 20).await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 8);

    let mut worker_config = env.worker_config();
    worker_config.common.budgets = budgets;
    worker_config.wati.api_version = WatiApiVersion::V1;
    let _worker = env.start_worker_with(worker_config).await;
    eventually("send-otp to admit again", DEADLINE, || async {
        (env.send_otp(&phone(999)).await.0 == 202).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_send_refused_for_another_reason_gives_its_room_back() {
    let mut env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.common.budgets = budgets(WatiApiVersion::V3, 30, 80, 1000);
    api_config.limits.resend_cooldown_seconds = 30;
    let _api = env.start_api_with(api_config).await;
    let pending = || async {
        let count: u64 = redis::cmd("ZCARD")
            .arg(env.keys().pending_sends())
            .query_async(&mut env.redis.clone())
            .await
            .expect("read the pending sends");
        count
    };
    env.send_accepted(&phone(1)).await;
    assert_eq!(pending().await, 1);
    // The cooldown refuses the second send after its room was reserved.
    assert_eq!(env.send_otp(&phone(1)).await.0, 429);
    assert_eq!(pending().await, 1);
}
