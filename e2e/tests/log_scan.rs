//! No code, token, key or secret appears in any log line, at debug level, over a full
//! flow: send, deliver, WATI's receipts (whose `text` holds the code, posted to a path
//! holding the webhook secret), wrong guess, verify, me, logout, a permanent failure, and
//! a code that goes by SMS (Twilio's basic auth, its body, its signed callbacks).
//! (Its own test binary: it installs the process-wide log subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use otp_e2e::TestEnv;
use wati_sandbox::ScriptedReply;

const PHONE: &str = "919876543210";
const OTHER: &str = "14155552671";
/// A review phone (`TEST_PHONES`), and its fixed code.
const REVIEW: &str = "447911123456";
const REVIEW_CODE: &str = "4242424242";
/// A number not on WhatsApp, in a country with SMS.
const BY_SMS: &str = "447911123458";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_flow_logs_no_code_token_key_or_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut env = TestEnv::new().await;
    // Ten digits: six could turn up by chance in a timestamp's microseconds (it did).
    // SMS on for the United Kingdom: an SMS's body holds its code too.
    // Events to the app on too (to the sandbox's receiver): none may log a code either.
    let review = format!("{REVIEW}={REVIEW_CODE}");
    let events_url = format!("{}/sandbox/app-webhook", env.sandbox_url);
    let events = [
        "--app-webhook-url",
        events_url.as_str(),
        "--app-webhook-secret",
        wati_sandbox::DEFAULT_APP_WEBHOOK_SECRET,
    ];
    let mut api_args = vec!["--otp-length", "10", "--test-phones", &review];
    api_args.extend(events);
    let _api = env.start_sms_api("44", &api_args).await;
    let mut worker = env.sms_worker_config("44", std::time::Duration::ZERO);
    worker.common.events = env.api_config_with(&events).common.events;
    let _worker = env.start_worker_with(worker).await;
    env.enable_receipts(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_millis(100),
        1,
        false,
    );
    let first = env.send_accepted(PHONE).await;
    env.wait_for_status(&first, "read").await;
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    let wrong = if code == "0000000000" {
        "1111111111"
    } else {
        "0000000000"
    };
    assert_eq!(env.verify(PHONE, wrong).await.0, 401);
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(env.get("/api/auth/me", Some(&token)).await.0, 200);
    assert_eq!(env.logout(&token).await, 204);
    env.sandbox.script(
        OTHER,
        vec![ScriptedReply {
            status: Some(401),
            ..ScriptedReply::default()
        }],
    );
    let body = env.send_accepted(OTHER).await;
    env.wait_for_status(&body, "failed").await;
    env.send_accepted(REVIEW).await;
    assert_eq!(env.verify(REVIEW, REVIEW_CODE).await.0, 200);
    // Not on WhatsApp: the code goes by SMS, and its status callbacks come back signed.
    env.sandbox.script(
        BY_SMS,
        vec![ScriptedReply {
            valid_whatsapp_number: Some(false),
            ..ScriptedReply::default()
        }],
    );
    env.send_accepted(BY_SMS).await;
    let sms_code = otp_e2e::eventually("the SMS", otp_e2e::DEADLINE, || async {
        let sms = env.sandbox.sms_messages(BY_SMS).pop()?;
        Some(
            sms.text
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>(),
        )
    })
    .await;
    assert_eq!(sms_code.len(), 10);
    assert_eq!(env.verify(BY_SMS, &sms_code).await.0, 200);

    // The events of all that were told, and hold no code or token either.
    let told = otp_e2e::eventually("the events of the flow", otp_e2e::DEADLINE, || async {
        let told = env.sandbox.app_events();
        told.iter()
            .any(|e| e.event_type.as_deref() == Some("session.revoked"))
            .then_some(told)
    })
    .await;
    for event in &told {
        assert!(event.verified, "{event:?}");
        let data = event.data.clone().unwrap_or_default().to_string();
        for secret in [code.as_str(), token.as_str(), REVIEW_CODE] {
            assert!(
                !data.contains(secret),
                "an event holds a code or token: {data}"
            );
        }
    }
    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(
        logs.contains("send accepted") && logs.contains("delivered"),
        "logs were captured"
    );
    assert!(
        logs.lines().count() > 50,
        "debug lines were captured: {}",
        logs.lines().count()
    );
    let token_signature = token.rsplit('.').next().expect("signature");
    for (what, secret) in [
        ("the code", code.as_str()),
        ("the SMS's code", sms_code.as_str()),
        ("the Twilio token", wati_sandbox::DEFAULT_TWILIO_AUTH_TOKEN),
        ("the review phone's code", REVIEW_CODE),
        ("the token", token.as_str()),
        ("the token's signature", token_signature),
        ("JWT_SECRET", otp_e2e::JWT_SECRET),
        ("OTP_SECRET", otp_e2e::OTP_SECRET),
        ("the WATI key", otp_e2e::WATI_KEY),
        ("the webhook secret", otp_e2e::WEBHOOK_SECRET),
        (
            "the app webhook secret",
            wati_sandbox::DEFAULT_APP_WEBHOOK_SECRET,
        ),
    ] {
        let line = logs.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "{what} in a log line: {line:?}");
    }
    assert!(
        logs.contains("/api/webhooks/wati/{secret}"),
        "the webhook's requests were logged, redacted"
    );
}
