//! Backlog-aware admission: when the queue is so far behind that a new code would expire
//! before it could be sent, send-otp answers 503 with Retry-After, and accepts again
//! once the backlog drains.

use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::json;

fn phone(n: u32) -> String {
    format!("9198765432{n:02}")
}

#[tokio::test]
async fn a_backlog_longer_than_a_codes_life_is_refused_then_accepted_again() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.common.otp_ttl_seconds = 2;
    config.wati_sends_per_second = 1;
    let _api = env.start_api_with(config).await;

    // No worker: at 1 send a second, a third queued job already waits longer than 2 s.
    let mut n = 0;
    let refusal = eventually("send-otp to refuse the backlog", DEADLINE, || {
        n += 1;
        let request = env
            .http
            .post(format!("{}/api/auth/send-otp", env.api_url))
            .json(&json!({"phone": phone(n)}));
        async move {
            let response = request.send().await.ok()?;
            (response.status() == 503).then_some(response)
        }
    })
    .await;
    assert!(n >= 4, "refused after only {} accepted", n - 1);
    let retry_after: u64 = refusal.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1);
    let body: serde_json::Value = refusal.json().await.expect("json");
    assert_eq!(body["code"], "UNAVAILABLE");
    assert_eq!(body["message"], "Failed to send OTP");

    let _worker = env.start_worker().await;
    eventually(
        "send-otp to accept once the queue drained",
        DEADLINE,
        || async { (env.send_otp(&phone(99)).await.0 == 202).then_some(()) },
    )
    .await;
}
