//! Events to the app (Standard Webhooks) through the whole pipeline, each request checked
//! with the official Python verifier (`standardwebhooks` on PyPI) using only the secret:
//! a login's events; a tampered body or a stale timestamp refused; retries with one
//! `webhook-id`; a hanging endpoint in nobody's way; two secrets, two signatures; 410
//! Gone; no code or token in any event.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use otp_e2e::app_receiver::{Answer, AppReceiver, Received};
use otp_e2e::{DEADLINE, Running, TestEnv, eventually};
use tokio::io::AsyncWriteExt;

const PHONE: &str = "919876543210";
/// `whsec_` and base64 of 24 bytes (the Standard Webhooks specification's example key).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second key, for rotation.
const NEXT_SECRET: &str = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

/// An api and a worker telling `receiver` everything, signed with `secrets`, retrying
/// after 1 s, 1 s and 1 s; receipts on (delivered after 50 ms, read not within a test).
async fn events_env(receiver: &AppReceiver, secrets: &str) -> (TestEnv, Running, Running) {
    events_env_of(receiver, secrets, "").await
}

/// [`events_env`], telling only the event types in `types` (all when empty).
async fn events_env_of(
    receiver: &AppReceiver,
    secrets: &str,
    types: &str,
) -> (TestEnv, Running, Running) {
    let mut env = TestEnv::new().await;
    let events = [
        "--app-webhook-url",
        &receiver.url,
        "--app-webhook-secret",
        secrets,
        "--app-webhook-retry-seconds",
        "1,1,1",
        "--app-webhook-events",
        types,
    ];
    let api = env.start_api_with(env.api_config_with(&events)).await;
    env.enable_receipts(
        Duration::from_millis(50),
        Duration::from_secs(3600),
        1,
        false,
    );
    let worker = env.start_worker_with(env.worker_config_with(&events)).await;
    (env, api, worker)
}

/// The official verifier's answer for `received` under `secret`: the event's JSON, or
/// why it refused. Missing Python or the package fails the test, naming them.
async fn verified(received: &Received, secret: &str) -> Result<serde_json::Value, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events/verify.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            secret,
            &received.id,
            &received.timestamp,
            &received.signature,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}) (.ci/run installs it)"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&received.body).await.expect("the body");
    drop(stdin);
    let output = child.wait_with_output().await.expect("the verifier ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the standardwebhooks package is missing: pip install standardwebhooks==1.3.0 (.ci/run does)\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(serde_json::from_str(&stdout).unwrap_or_default())
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

/// Waits until the receiver has got an event of each of `types`; every request so far.
async fn wait_for_types(receiver: &AppReceiver, types: &[&str]) -> Vec<Received> {
    eventually(&format!("the events {types:?}"), DEADLINE, || async {
        let received = receiver.received();
        let got = |kind: &&str| received.iter().any(|r| r.json()["type"] == **kind);
        types.iter().all(got).then_some(received)
    })
    .await
}

#[tokio::test]
async fn a_login_tells_the_app_sent_delivered_verified_and_user_created_each_verified() {
    let receiver = AppReceiver::start().await;
    let (env, _api, _worker) = events_env(&receiver, SECRET).await;
    let login = env.log_in(PHONE).await;
    let received = wait_for_types(
        &receiver,
        &["otp.sent", "otp.delivered", "otp.verified", "user.created"],
    )
    .await;
    let code = env.sandbox.messages(PHONE)[0].code.clone();
    let user_id = login["user"]["id"].as_str().expect("a user id");
    for request in &received {
        let event = verified(request, SECRET)
            .await
            .unwrap_or_else(|why| panic!("{}: {why}", request.id));
        assert!(request.id.starts_with("msg_"), "{}", request.id);
        let data = &event["data"];
        match event["type"].as_str().expect("a type") {
            "otp.sent" | "otp.delivered" => {
                assert_eq!(data["phone"], PHONE);
                assert_eq!(data["channel"], "whatsapp");
                assert!(data["requestId"].is_string());
            }
            "otp.verified" => {
                assert_eq!(data["userId"], user_id);
                assert_eq!(data["channel"], "whatsapp");
            }
            "user.created" => assert_eq!(data["userId"], user_id),
            other => panic!("an event this login does not make: {other}"),
        }
        // No code and no token, in any event.
        let body = String::from_utf8_lossy(&request.body);
        for secret in [
            code.as_str(),
            login["token"].as_str().expect("token"),
            login["refreshToken"].as_str().expect("refresh token"),
        ] {
            assert!(!body.contains(secret), "{body}");
        }
    }
}

#[tokio::test]
async fn a_tampered_body_or_a_stale_timestamp_is_refused_by_the_official_verifier() {
    let receiver = AppReceiver::start().await;
    let (env, _api, _worker) = events_env(&receiver, SECRET).await;
    env.send_accepted(PHONE).await;
    let request = wait_for_types(&receiver, &["otp.sent"]).await[0].clone();
    assert!(verified(&request, SECRET).await.is_ok());
    let mut tampered = request.clone();
    tampered.body = String::from_utf8_lossy(&request.body)
        .replace(PHONE, "919876543211")
        .into_bytes();
    assert!(verified(&tampered, SECRET).await.is_err());
    let mut stale = request.clone();
    let sent_at: u64 = request.timestamp.parse().expect("Unix seconds");
    stale.timestamp = (sent_at - 600).to_string();
    assert!(verified(&stale, SECRET).await.is_err());
    assert!(
        verified(&request, NEXT_SECRET).await.is_err(),
        "another key"
    );
}

#[tokio::test]
async fn an_endpoint_failing_twice_gets_the_event_three_times_with_one_id() {
    let receiver = AppReceiver::start().await;
    receiver.script(&[Answer::Status(500), Answer::Status(503)]);
    // One type only, so that the scripted answers are all this event's.
    let (env, _api, _worker) = events_env_of(&receiver, SECRET, "otp.sent").await;
    env.send_accepted(PHONE).await;
    let attempts = eventually("three attempts", DEADLINE, || async {
        let sent: Vec<Received> = receiver
            .received()
            .into_iter()
            .filter(|r| r.json()["type"] == "otp.sent")
            .collect();
        (sent.len() >= 3).then_some(sent)
    })
    .await;
    assert_eq!(attempts.len(), 3, "delivered on the third: no more");
    assert!(
        attempts.iter().all(|a| a.id == attempts[0].id),
        "one webhook-id"
    );
    // Each attempt signed anew, a second or more after the last (the retry schedule).
    for pair in attempts.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900));
    }
    for attempt in &attempts {
        assert!(verified(attempt, SECRET).await.is_ok());
    }
}

#[tokio::test]
async fn a_hanging_endpoint_is_in_the_way_of_no_send_and_no_login() {
    let receiver = AppReceiver::start().await;
    receiver.script(&[Answer::Hang(Duration::from_secs(30)); 64]);
    let (env, _api, _worker) = events_env(&receiver, SECRET).await;
    // Hold the endpoint busy first: the events of one login hang there.
    env.log_in(PHONE).await;
    eventually("an event hanging at the endpoint", DEADLINE, || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let other = "919876543211";
    let started = Instant::now();
    let request_id = env.send_accepted(other).await;
    let send = started.elapsed();
    let code = env.wait_for_messages(other, 1).await[0].code.clone();
    let started = Instant::now();
    let (status, body) = env.verify(other, &code).await;
    let verify = started.elapsed();
    assert_eq!(status, 200, "{body}");
    eprintln!("with the endpoint hanging: send-otp {send:?}, verify-otp {verify:?}");
    assert!(send < Duration::from_secs(2) && verify < Duration::from_secs(2));
    assert!(!request_id.is_empty());
}

/// Every request for `phone`'s `otp.sent` so far.
fn sent_events_of(receiver: &AppReceiver, phone: &str) -> Vec<Received> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.json()["type"] == "otp.sent" && r.json()["data"]["phone"] == phone)
        .collect()
}

#[tokio::test]
async fn an_endpoint_that_never_answers_gets_the_event_again_after_ten_seconds() {
    let receiver = AppReceiver::start().await;
    receiver.script(&[Answer::Hang(Duration::from_secs(600))]);
    let (env, _api, _worker) = events_env_of(&receiver, SECRET, "otp.sent").await;
    env.send_accepted(PHONE).await;
    // Before, a post had no time limit: it waited for ever, the event with it.
    let attempts = eventually("a second attempt", DEADLINE * 2, || async {
        let sent = sent_events_of(&receiver, PHONE);
        (sent.len() >= 2).then_some(sent)
    })
    .await;
    assert_eq!(attempts[0].id, attempts[1].id, "one webhook-id");
    let waited = attempts[1].at.duration_since(attempts[0].at);
    assert!(
        waited >= Duration::from_secs(10),
        "given up after the 10 s limit, then retried: {waited:?}"
    );
}

#[tokio::test]
async fn a_long_retry_after_holds_back_no_other_event() {
    let receiver = AppReceiver::start().await;
    // The first event's first attempt: 503 and an hour's Retry-After; the next two
    // requests, whichever event they are: a plain 500.
    receiver.script(&[
        Answer::RetryAfter(503, 3600),
        Answer::Status(500),
        Answer::Status(500),
    ]);
    let (env, _api, _worker) = events_env_of(&receiver, SECRET, "otp.sent").await;
    let first = "919876543211";
    env.send_accepted(first).await;
    eventually("the first event's first attempt", DEADLINE, || async {
        (!sent_events_of(&receiver, first).is_empty()).then_some(())
    })
    .await;
    env.send_accepted(PHONE).await;
    // Before, the first event waited its hour at the head of the queue of second
    // attempts, and the second event's 1 s retry waited behind it.
    for phone in [first, PHONE] {
        eventually(
            &format!("{phone}'s event posted again"),
            DEADLINE,
            || async { (sent_events_of(&receiver, phone).len() >= 2).then_some(()) },
        )
        .await;
    }
}

#[tokio::test]
async fn with_two_secrets_each_signature_verifies_on_its_own() {
    let receiver = AppReceiver::start().await;
    let (env, _api, _worker) = events_env(&receiver, &format!("{SECRET},{NEXT_SECRET}")).await;
    env.send_accepted(PHONE).await;
    let request = wait_for_types(&receiver, &["otp.sent"]).await[0].clone();
    assert_eq!(
        request.signature.split(' ').count(),
        2,
        "{}",
        request.signature
    );
    assert!(verified(&request, SECRET).await.is_ok(), "the old key");
    assert!(verified(&request, NEXT_SECRET).await.is_ok(), "the new key");
}

#[tokio::test]
async fn an_endpoint_that_answers_410_gets_no_more_events() {
    let receiver = AppReceiver::start().await;
    receiver.script(&[Answer::Status(410)]);
    let (env, _api, _worker) = events_env(&receiver, SECRET).await;
    env.send_accepted(PHONE).await;
    wait_for_types(&receiver, &["otp.sent"]).await;
    // Another send: its events are dropped, not posted, nor retried.
    let request_id = env.send_accepted("919876543211").await;
    env.wait_for_status(&request_id, "delivered").await;
    let events = env.queues().events;
    eventually("the events queue to drain", DEADLINE, || async {
        env.queue_counts(&events)
            .await
            .filter(|c| c.ready == 0)
            .map(drop)
    })
    .await;
    assert_eq!(receiver.received().len(), 1, "nothing after the 410");
}

#[tokio::test]
async fn the_sandboxs_own_receiver_verifies_every_event_of_a_login() {
    // The sandbox's receiver, written from the specification apart from the sender,
    // as `scripts/dev` uses it.
    let mut env = TestEnv::new().await;
    let url = format!("{}/sandbox/app-webhook", env.sandbox_url);
    let events = [
        "--app-webhook-url",
        &url,
        "--app-webhook-secret",
        wati_sandbox::DEFAULT_APP_WEBHOOK_SECRET,
    ];
    let _api = env.start_api_with(env.api_config_with(&events)).await;
    env.enable_receipts(
        Duration::from_millis(50),
        Duration::from_secs(3600),
        1,
        false,
    );
    let _worker = env.start_worker_with(env.worker_config_with(&events)).await;
    env.log_in(PHONE).await;
    let received = eventually("four events at the sandbox", DEADLINE, || async {
        let received = env.sandbox.app_events();
        (received.len() >= 4).then_some(received)
    })
    .await;
    for event in &received {
        assert!(event.verified, "{event:?}");
    }
}
