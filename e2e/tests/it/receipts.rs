//! WATI's delivery receipts through the whole pipeline: the sandbox posts them to the
//! api's webhook as WATI would, and each send's status follows (forward only, whatever
//! the order or the repeats); a failure receipt deletes the code unless WhatsApp
//! delivered another send of it; a wrong secret is an unknown route.

use std::time::Duration;

use otp_e2e::prometheus::value;
use otp_e2e::{DEADLINE, TestEnv, WEBHOOK_SECRET, budgets, eventually};
use otp_shared::budget::WatiApiVersion;
use otp_shared::redis::status::{DeliveryState, StatusStore};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wati_sandbox::ScriptedReply;

const PHONE: &str = "919876543210";

fn at(body: &Value, field: &str) -> OffsetDateTime {
    let text = body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"));
    OffsetDateTime::parse(text, &Rfc3339).expect("an RFC 3339 time")
}

fn event(kind: &str, local_message_id: &str) -> Value {
    json!({
        "eventType": kind,
        "statusString": "Delivered",
        "localMessageId": local_message_id,
        "whatsappMessageId": "wamid.test",
        "timestamp": (otp_shared::now_ms() / 1000).to_string(),
    })
}

/// An api and a worker, with the sandbox posting receipts to the api: delivered after
/// `delivered_ms`, read after `read_ms`, each event `repeat` times, read first if
/// `reorder`.
async fn with_receipts(
    delivered_ms: u64,
    read_ms: u64,
    repeat: u32,
    reorder: bool,
) -> (TestEnv, otp_e2e::Running, otp_e2e::Running) {
    let mut env = TestEnv::new().await;
    let api = env.start_api().await;
    let worker = env.start_worker().await;
    env.enable_receipts(
        Duration::from_millis(delivered_ms),
        Duration::from_millis(read_ms),
        repeat,
        reorder,
    );
    (env, api, worker)
}

#[tokio::test]
async fn a_send_ends_read_with_both_timestamps() {
    let (env, _api, _worker) = with_receipts(100, 300, 1, false).await;
    let request_id = env.send_accepted(PHONE).await;
    let status = env.wait_for_status(&request_id, "read").await;
    assert_eq!(status["attempts"], 1);
    assert!(
        at(&status, "deliveredAt") <= at(&status, "readAt"),
        "{status}"
    );
    // The code still works: receipts say how it travelled, not that it was used.
    let code = env.sandbox.messages(PHONE)[0].code.clone();
    assert_eq!(env.verify(PHONE, &code).await.0, 200);
}

#[tokio::test]
async fn repeated_and_reordered_receipts_end_the_same_way() {
    // Every event twice, and read before delivered.
    let (env, _api, _worker) = with_receipts(100, 100, 2, true).await;
    let request_id = env.send_accepted(PHONE).await;
    eventually("all six receipts answered", DEADLINE, || async {
        (env.sandbox.receipts_posted() == 6).then_some(())
    })
    .await;
    let kinds: Vec<String> = env
        .sandbox
        .receipts()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let read = kinds.iter().position(|k| k == "sentMessageREAD_v2");
    let delivered = kinds.iter().position(|k| k == "sentMessageDELIVERED_v2");
    assert!(read < delivered, "read came first: {kinds:?}");
    let status = env.wait_for_status(&request_id, "read").await;
    assert!(
        at(&status, "deliveredAt") <= at(&status, "readAt"),
        "{status}"
    );
    assert_eq!(env.sandbox.receipts_failed(), 0);
    // Yet more copies of every event change nothing, not even updatedAt.
    for kind in [
        "templateMessageSent_v2",
        "sentMessageDELIVERED_v2",
        "sentMessageREAD_v2",
    ] {
        let (code, body) = env
            .post_receipt(WEBHOOK_SECRET, &event(kind, &request_id))
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let (_, again) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(again, status);
}

#[tokio::test]
async fn a_failure_receipt_fails_the_send_and_deletes_its_code() {
    let (env, _api, _worker) = with_receipts(100, 300, 1, false).await;
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            failed_code: Some("131026".into()),
            ..ScriptedReply::default()
        }],
    );
    let request_id = env.send_accepted(PHONE).await;
    let status = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(status["failedCode"], "131026");
    assert_eq!(status["reason"], "Message undeliverable");
    // WATI had accepted it; WhatsApp could not deliver it: the code is gone at once.
    let code = env.sandbox.messages(PHONE)[0].code.clone();
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!((status, &body["code"]), (404, &json!("OTP_NOT_FOUND")));
}

#[tokio::test]
async fn a_failure_receipt_keeps_a_code_that_another_send_delivered() {
    let (env, _api, _worker) = with_receipts(50, 100, 1, false).await;
    let first = env.send_accepted(PHONE).await;
    env.wait_for_status(&first, "read").await;
    // The re-send of the same code fails at WhatsApp.
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            failed_code: Some("131049".into()),
            ..ScriptedReply::default()
        }],
    );
    let second = env.send_accepted(PHONE).await;
    env.wait_for_status(&second, "failed").await;
    let messages = env.sandbox.messages(PHONE);
    assert_eq!(
        messages[0].code, messages[1].code,
        "a re-send of the same code"
    );
    let (status, body) = env.verify(PHONE, &messages[0].code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_wrong_secret_is_answered_like_an_unknown_route_and_changes_nothing() {
    let (env, _api, _worker) = with_receipts(0, 0, 1, false).await;
    env.sandbox
        .set_receipts(wati_sandbox::ReceiptSettings::default());
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    let wrong = "x".repeat(WEBHOOK_SECRET.len());
    let delivered = event("sentMessageDELIVERED_v2", &request_id);
    let (status, body) = env.post_receipt(&wrong, &delivered).await;
    let (_, unknown_route) = env.post("/api/no-such-route", json!({})).await;
    assert_eq!((status, body), (404, unknown_route));
    // Even a malformed body: the route does not exist for a wrong secret.
    assert_eq!(env.post_receipt(&wrong, &json!([1])).await.0, 404);
    // Nor for any other method, a body over the limit, a secret of another length or
    // one that is not UTF-8 once decoded: every answer is the unknown route's.
    let answer = |method: reqwest::Method, path: String, body: Vec<u8>| {
        let request = env
            .http
            .request(method, format!("{}{path}", env.api_url))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.expect("api reachable");
            let status = response.status().as_u16();
            (status, response.text().await.expect("a body"))
        }
    };
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024)).into_bytes();
    for (method, secret, body) in [
        (reqwest::Method::GET, wrong.clone(), Vec::new()),
        (reqwest::Method::PUT, wrong.clone(), b"{}".to_vec()),
        (reqwest::Method::POST, wrong.clone(), big.clone()),
        (reqwest::Method::POST, "short".to_owned(), b"{}".to_vec()),
        (reqwest::Method::POST, "%FF%FE".to_owned(), b"{}".to_vec()),
    ] {
        let webhook = answer(
            method.clone(),
            format!("/api/webhooks/wati/{secret}"),
            body.clone(),
        )
        .await;
        let unknown = answer(method.clone(), format!("/api/no-such/{secret}"), body).await;
        assert_eq!(webhook.0, 404, "{method} {secret}: {}", webhook.1);
        assert_eq!(webhook, unknown, "{method} {secret}");
    }
    // With the right secret, the method and the size count.
    assert_eq!(
        answer(
            reqwest::Method::GET,
            format!("/api/webhooks/wati/{WEBHOOK_SECRET}"),
            Vec::new()
        )
        .await
        .0,
        405
    );
    assert_eq!(
        answer(
            reqwest::Method::POST,
            format!("/api/webhooks/wati/{WEBHOOK_SECRET}"),
            big
        )
        .await
        .0,
        413
    );
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status["status"], "sent");
    // The right secret moves it.
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &delivered).await.0, 200);
    env.wait_for_status(&request_id, "delivered").await;
}

#[tokio::test]
async fn events_for_unknown_sends_and_unknown_events_get_200_and_are_counted() {
    let mut env = TestEnv::new().await;
    let api = env.start_api().await;
    let unknown_sends = || async {
        let samples = env.metrics_of(&api).await;
        value(
            &samples,
            "otp_receipts_total",
            &[("event", "delivered"), ("outcome", "unknown_send")],
        )
    };
    let before = unknown_sends().await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-one-of-ours".into()] {
        let (status, body) = env
            .post_receipt(WEBHOOK_SECRET, &event("sentMessageDELIVERED_v2", &id))
            .await;
        assert_eq!((status, body), (200, json!({"status": "ok"})));
    }
    let other = json!({"eventType": "messageReceived", "text": "hello"});
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &other).await.0, 200);
    // Counters are process-wide: other tests may count too, never fewer.
    assert!(unknown_sends().await >= before + 2.0);
    // Not an event at all: 400, never 5xx.
    for bad in [json!([1]), json!("x"), json!({"eventType": 3}), json!({})] {
        let (status, body) = env.post_receipt(WEBHOOK_SECRET, &bad).await;
        assert_eq!((status, &body["code"]), (400, &json!("INVALID_REQUEST")));
    }
}

#[tokio::test]
async fn without_a_secret_configured_the_webhook_does_not_exist() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.wati_webhook_secret = None;
    let _api = env.start_api_with(config).await;
    let event = event("sentMessageDELIVERED_v2", &uuid::Uuid::new_v4().to_string());
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &event).await.0, 404);
}

#[tokio::test]
async fn a_receipt_that_comes_before_the_worker_records_sent_is_not_taken_back() {
    let env = TestEnv::new().await;
    // One call a second: the send waits for its call while its receipt arrives.
    let budgets = budgets(WatiApiVersion::V3, 10, 0, 32);
    let mut config = env.worker_config();
    config.common.budgets = budgets.clone();
    let (deliverer, _stop) = env.deliverer(&config, env.redis.clone());
    let job = env.stored_job(PHONE, Duration::from_secs(300)).await;
    env.occupy_call_slot(&budgets).await;
    let receipts = otp_api::receipts::ReceiptStore::new(env.redis.clone(), env.keys());
    let statuses = StatusStore::new(env.redis.clone(), env.keys());
    let request_id = job.request_id;
    let early_receipt = async {
        eventually("the send to wait for its call", DEADLINE, || async {
            let record = statuses.get(request_id).await.ok()??;
            (record.first.state == DeliveryState::Sending).then_some(())
        })
        .await;
        let delivered = otp_api::receipts::Receipt::parse(
            event("sentMessageDELIVERED_v2", &request_id.to_string())
                .to_string()
                .as_bytes(),
        )
        .expect("an event");
        receipts
            .apply(&delivered, otp_api::receipts::CodeKept::Delete)
            .await
            .expect("redis")
    };
    let (outcome, applied) = tokio::join!(deliverer.deliver(&job), early_receipt);
    assert!(matches!(
        applied,
        otp_api::receipts::Applied::Changed { .. }
    ));
    assert!(
        matches!(outcome, otp_worker::delivery::Outcome::Sent),
        "{outcome:?}"
    );
    let record = statuses
        .get(request_id)
        .await
        .expect("redis")
        .expect("a status");
    assert_eq!(
        record.first.state,
        DeliveryState::Delivered,
        "sent did not overwrite it"
    );
    assert_eq!(record.first.attempts, 1);
}

#[tokio::test]
async fn a_receipt_naming_another_phone_acts_on_its_own_send_only() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let other = "14155552671";
    let ours = env.send_accepted(PHONE).await;
    let theirs = env.send_accepted(other).await;
    env.wait_for_status(&ours, "sent").await;
    env.wait_for_status(&theirs, "sent").await;
    let mut failed = event("templateMessageFailed", &ours);
    failed["failedCode"] = json!("131026");
    failed["waId"] = json!(other);
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &failed).await.0, 200);
    let status = env.wait_for_status(&ours, "failed").await;
    assert_eq!(status["failedCode"], "131026");
    // The send's own code is gone; the phone the event named keeps its code.
    assert_eq!(env.verify(PHONE, "123456").await.0, 404);
    let code = env.sandbox.messages(other)[0].code.clone();
    assert_eq!(env.verify(other, &code).await.0, 200);
}

#[tokio::test]
async fn a_receipt_time_far_off_is_taken_as_its_arrival_and_the_status_stays_readable() {
    // The sandbox posts nothing: the test posts the receipts, as the secret's holder could.
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let request_id = env.send_accepted(PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    let before = OffsetDateTime::now_utc();
    let mut future = event("sentMessageDELIVERED_v2", &request_id);
    future["timestamp"] = json!("100000000000000000");
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &future).await.0, 200);
    let mut ancient = event("sentMessageREAD_v2", &request_id);
    ancient["timestamp"] = json!("1");
    assert_eq!(env.post_receipt(WEBHOOK_SECRET, &ancient).await.0, 200);
    // Before the fix, 1e17 was stored as "1e+17", and otp-status answered 500 for a day.
    let status = env.wait_for_status(&request_id, "read").await;
    let after = OffsetDateTime::now_utc();
    for field in ["deliveredAt", "readAt"] {
        let when = at(&status, field);
        assert!(
            when >= before - Duration::from_secs(1) && when <= after,
            "{field} {when} is its arrival: {status}"
        );
    }
}
