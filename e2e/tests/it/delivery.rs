//! The worker against the real Redis and RabbitMQ and the WATI sandbox: each outcome of
//! the spec's WATI tables, injected through the sandbox's script, through v3 (batched,
//! the default) and v1 (one call per code) alike.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use otp_api::config::ApiConfig;
use otp_e2e::{DEADLINE, TEST_BATCH_MAX, TestEnv, budgets, eventually};
use otp_shared::budget::WatiApiVersion;
use otp_worker::config::WorkerConfig;
use serde_json::{Value, json};
use wati_sandbox::ScriptedReply;

const PHONE: &str = "919876543210";
const VERSIONS: [WatiApiVersion; 2] = [WatiApiVersion::V3, WatiApiVersion::V1];

fn api_config(env: &TestEnv, version: WatiApiVersion) -> ApiConfig {
    let mut config = env.api_config();
    config.common.budgets = budgets(version, 0, 0, TEST_BATCH_MAX);
    config
}

fn worker_config(env: &TestEnv, version: WatiApiVersion) -> WorkerConfig {
    let mut config = env.worker_config();
    config.common.budgets = budgets(version, 0, 0, TEST_BATCH_MAX);
    config.wati.api_version = version;
    config
}

/// A fresh environment with an api and a worker speaking `version`.
async fn started(version: WatiApiVersion) -> (TestEnv, otp_e2e::Running, otp_e2e::Running) {
    let mut env = TestEnv::new().await;
    let api = env.start_api_with(api_config(&env, version)).await;
    let worker = env.start_worker_with(worker_config(&env, version)).await;
    (env, api, worker)
}

fn reply(status: u16) -> ScriptedReply {
    ScriptedReply {
        status: Some(status),
        ..ScriptedReply::default()
    }
}

/// Takes one message from the dead-letter queue: its body and its reason header.
async fn next_dead_letter(env: &TestEnv) -> (Vec<u8>, String) {
    let dead = env.queues().dead;
    eventually("a dead letter", DEADLINE, || {
        let dead = dead.clone();
        async move {
            // A channel per try: a queue not declared yet closes the channel that asked.
            let message = env
                .channel()
                .await
                .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .ok()??;
            let reason = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(otp_shared::amqp::DEAD_REASON_HEADER).cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => Some(s.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            Some((message.delivery.data.clone(), reason))
        }
    })
    .await
}

#[tokio::test]
async fn a_code_is_delivered_through_the_tenant_path_and_verifies() {
    for version in VERSIONS {
        let (env, _api, _worker) = started(version).await;
        let request_id = env.send_accepted(PHONE).await;
        let messages = env.wait_for_messages(PHONE, 1).await;
        let code = &messages[0].code;
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        match version {
            // v3 names each send by its request id; the broadcast is the call's.
            WatiApiVersion::V3 => {
                assert_eq!(messages[0].local_message_id.as_deref(), Some(&*request_id))
            }
            WatiApiVersion::V1 => assert!(
                messages[0]
                    .broadcast_name
                    .contains(&request_id.replace('-', ""))
            ),
        }
        assert_eq!(
            env.sandbox.calls(PHONE)[0].api,
            match version {
                WatiApiVersion::V3 => wati_sandbox::Api::V3,
                WatiApiVersion::V1 => wati_sandbox::Api::V1,
            }
        );
        let status = env.wait_for_status(&request_id, "sent").await;
        assert_eq!(status["attempts"], 1);
        let (status, body) = env.verify(PHONE, code).await;
        assert_eq!(status, 200, "{version:?}: {body}");
    }
}

#[tokio::test]
async fn the_code_length_follows_the_setting() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.otp_length = 8;
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let messages = env.wait_for_messages(PHONE, 1).await;
    assert_eq!(messages[0].code.len(), 8);
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_code_and_delivered_once() {
    for version in VERSIONS {
        let (env, _api, _worker) = started(version).await;
        env.sandbox.script(PHONE, vec![reply(500), reply(503)]);
        let request_id = env.send_accepted(PHONE).await;
        let status = env.wait_for_status(&request_id, "sent").await;
        assert_eq!(status["attempts"], 3);
        let calls = env.sandbox.calls(PHONE);
        let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [500, 503, 200], "{version:?}");
        assert!(
            calls.iter().all(|c| c.code == calls[0].code),
            "same code on every attempt"
        );
        assert_eq!(env.sandbox.messages(PHONE).len(), 1);
        let code = env.sandbox.messages(PHONE)[0].code.clone();
        assert_eq!(env.verify(PHONE, &code).await.0, 200);
    }
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let (env, _api, _worker) = started(WatiApiVersion::V3).await;
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            status: Some(429),
            retry_after: Some(2),
            ..ScriptedReply::default()
        }],
    );
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    let calls = env.sandbox.calls(PHONE);
    assert_eq!(calls.len(), 2);
    let gap = calls[1].received_at_ms - calls[0].received_at_ms;
    assert!(gap >= 2000, "second call {gap} ms after the 429");
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_and_retries() {
    let (env, _api, _worker) = started(WatiApiVersion::V1).await;
    env.sandbox.script(PHONE, vec![reply(429), reply(429)]);
    let request_id = env.send_accepted(PHONE).await;
    let status = env.wait_for_status(&request_id, "sent").await;
    assert_eq!(status["attempts"], 3);
    let calls = env.sandbox.calls(PHONE);
    // The harness's schedule starts at 50 ms and doubles.
    let gaps: Vec<u64> = calls
        .windows(2)
        .map(|w| w[1].received_at_ms - w[0].received_at_ms)
        .collect();
    assert!(gaps[0] >= 50 && gaps[1] >= 100, "{gaps:?}");
}

#[tokio::test]
async fn wati_hanging_past_expiry_ends_expired_without_another_call() {
    for version in VERSIONS {
        let mut env = TestEnv::new().await;
        let mut config = api_config(&env, version);
        config.common.otp_ttl = std::time::Duration::from_secs(2);
        let _api = env.start_api_with(config).await;
        let mut worker_config = worker_config(&env, version);
        worker_config.wati.timeout = Duration::from_secs(30);
        let _worker = env.start_worker_with(worker_config).await;
        env.sandbox.script(
            PHONE,
            vec![ScriptedReply {
                delay_ms: Some(10_000),
                ..ScriptedReply::default()
            }],
        );
        let request_id = env.send_accepted(PHONE).await;
        let status = env.wait_for_status(&request_id, "expired").await;
        assert_eq!(status["attempts"], 1);
        assert_eq!(status["reason"], "Failed to send OTP");
        // The one hanging call was cut at the code's expiry, and nothing followed it.
        assert_eq!(env.sandbox.arrived(), 1, "{version:?}");
        let (code, _) = env.verify(PHONE, "123456").await;
        assert_eq!(code, 410);
    }
}

#[tokio::test]
async fn permanent_failures_delete_the_code_dead_letter_the_job_and_say_why() {
    let cases = [
        (
            ScriptedReply {
                status: Some(200),
                result: Some(false),
                info: Some("Invalid WhatsApp number".into()),
                ..ScriptedReply::default()
            },
            "WATI refused the message",
            Some("Invalid WhatsApp number"),
        ),
        (reply(401), "WATI API authentication failed", None),
        (reply(403), "WATI API authentication failed", None),
        (reply(404), "WATI template not found", None),
        (reply(400), "WATI rejected the request (HTTP 400)", None),
    ];
    for version in VERSIONS {
        for (scripted, reason, info) in cases.clone() {
            let (env, _api, _worker) = started(version).await;
            env.sandbox.script(PHONE, vec![scripted]);
            let request_id = env.send_accepted(PHONE).await;
            let status = env.wait_for_status(&request_id, "failed").await;
            assert_eq!(status["reason"], reason);
            assert_eq!(status["attempts"], 1);
            if let Some(info) = info {
                assert_eq!(status["info"], info);
            }
            assert_eq!(env.sandbox.calls(PHONE).len(), 1, "{reason}: one call only");
            let (body, dead_reason) = next_dead_letter(&env).await;
            assert_eq!(dead_reason, reason);
            let job: Value = serde_json::from_slice(&body).expect("the job itself");
            assert_eq!(job["requestId"], request_id.as_str());
            let (code, _) = env.verify(PHONE, "123456").await;
            assert_eq!(code, 404, "{reason}: the code is gone");
        }
    }
}

#[tokio::test]
async fn a_code_that_cannot_be_delivered_before_expiry_ends_expired_with_no_late_call() {
    let mut env = TestEnv::new().await;
    let mut config = api_config(&env, WatiApiVersion::V3);
    config.common.otp_ttl = std::time::Duration::from_secs(2);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    env.sandbox.script(PHONE, vec![reply(500); 200]);
    let request_id = env.send_accepted(PHONE).await;
    let accepted_at = otp_shared::now_ms();
    let status = env.wait_for_status(&request_id, "expired").await;
    assert_eq!(status["reason"], "Failed to send OTP");
    let calls = env.sandbox.calls(PHONE);
    assert!(calls.len() >= 2, "retried: {}", calls.len());
    let last = calls.last().map_or(0, |c| c.received_at_ms);
    assert!(
        last < accepted_at + 2000,
        "a call {} ms after acceptance",
        last - accepted_at
    );
    assert!(env.sandbox.messages(PHONE).is_empty());
    let (code, body) = env.verify(PHONE, "123456").await;
    assert_eq!((code, &body["code"]), (410, &json!("OTP_EXPIRED")));
}

#[tokio::test]
async fn unreadable_messages_are_dead_lettered_and_good_jobs_keep_flowing() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    env.wait_for_a_consumer().await;
    for body in [&b"{not json"[..], br#"{"v":2,"requestId":"x"}"#] {
        env.publish_to_send_queue(body).await;
    }
    let (first, reason) = next_dead_letter(&env).await;
    assert_eq!(first, b"{not json");
    assert_eq!(reason, "malformed job");
    let (_, reason) = next_dead_letter(&env).await;
    assert_eq!(reason, "malformed job");
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    env.wait_for_messages(PHONE, 1).await;
}

#[tokio::test]
async fn a_job_of_an_unknown_version_is_dead_lettered_as_such() {
    let env = TestEnv::new().await;
    let _worker = env.start_worker().await;
    let job = json!({"v": 9, "requestId": uuid::Uuid::new_v4(), "codeId": uuid::Uuid::new_v4(), "phone": PHONE, "acceptedAtMs": 0});
    env.wait_for_a_consumer().await;
    env.publish_to_send_queue(&serde_json::to_vec(&job).expect("json"))
        .await;
    let (_, reason) = next_dead_letter(&env).await;
    assert_eq!(reason, "unknown job version");
}

#[tokio::test]
async fn shutdown_lets_the_job_in_flight_finish() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let mut worker = env.start_worker().await;
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            delay_ms: Some(1500),
            ..ScriptedReply::default()
        }],
    );
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sending").await;
    worker.signal_stop();
    assert!(
        worker.finished_within(Duration::from_secs(10)).await,
        "worker drained and returned"
    );
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status["status"], "sent");
    assert_eq!(env.sandbox.messages(PHONE).len(), 1);
}

#[tokio::test]
async fn a_re_send_that_gives_up_leaves_the_code_the_user_already_has() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let first = env.send_accepted(PHONE).await;
    env.wait_for_status(&first, "sent").await;
    let code = env.sandbox.messages(PHONE)[0].code.clone();
    // The re-send meets a WATI that asks to wait longer than the code lives: it gives up.
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            status: Some(429),
            retry_after: Some(600),
            ..ScriptedReply::default()
        }],
    );
    let second = env.send_accepted(PHONE).await;
    env.wait_for_status(&second, "expired").await;
    // The code from the first message still works.
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_dead_letter_queue_keeps_only_its_newest_jobs_and_only_for_a_while() {
    let env = TestEnv::new().await;
    let mut config = env.worker_config();
    config.dead_letters.max_length = 2;
    let worker = env.start_worker_with(config.clone()).await;
    env.wait_for_a_consumer().await;
    let dead = env.queues().dead;
    // One at a time: a worker handles jobs side by side, so jobs published together may
    // reach the dead-letter queue in any order.
    for n in 0..2 {
        env.publish_to_send_queue(format!("not a job {n}").as_bytes())
            .await;
        eventually("the job to be dead-lettered", DEADLINE, || async {
            env.queue_counts(&dead)
                .await
                .filter(|c| c.ready == n + 1)
                .map(drop)
        })
        .await;
    }
    env.publish_to_send_queue(b"not a job 2").await;
    // The third pushes the oldest out. Watched on the dead-letter queue itself: the send
    // queue's counts lag behind its deliveries (a quorum queue), so "the send queue is
    // empty" does not say that the third has been dead-lettered yet.
    eventually("the oldest dead letter to make way", DEADLINE, || async {
        let kept = env.queue_counts(&dead).await?.ready;
        (kept == 2 && env.peek_queue(&dead).await? == b"not a job 1").then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(next_dead_letter(&env).await.0, b"not a job 1");
    assert_eq!(next_dead_letter(&env).await.0, b"not a job 2");
    assert_eq!(
        env.queue_counts(&dead).await.map(|c| c.ready),
        Some(0),
        "at most two kept"
    );
}

#[tokio::test]
async fn dead_letters_expire() {
    let env = TestEnv::new().await;
    let mut config = env.worker_config();
    config.dead_letters.ttl = Duration::from_secs(1);
    let _worker = env.start_worker_with(config).await;
    env.wait_for_a_consumer().await;
    env.publish_to_send_queue(b"not a job").await;
    let dead = env.queues().dead;
    eventually("a dead letter", DEADLINE, || async {
        env.queue_counts(&dead).await.filter(|c| c.ready == 1)
    })
    .await;
    eventually("the dead letter to expire", DEADLINE, || async {
        env.queue_counts(&dead).await.filter(|c| c.ready == 0)
    })
    .await;
}
