//! The app's webhook receiver (`POST /sandbox/app-webhook`), over HTTP, with deliveries
//! signed here by an HMAC-SHA256 of this file's own, written from the Standard Webhooks
//! specification and checked against the spec's published test vector, so that the
//! sandbox is not checked against itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{
    AppEventRecord, AppWebhookRejection, DEFAULT_APP_WEBHOOK_SECRET, SandboxConfig,
    ScriptedAppAnswer, SignatureMatch,
};

mod common;

use common::{KEY, Served};

/// The secret the sandbox is given besides its default one, for rotation.
const NEXT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A secret the sandbox does not hold.
const STRANGER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Longest wait for something the sandbox is due to do; a deadline, not a delay.
const PATIENCE: Duration = Duration::from_secs(5);

/// The `v1,…` signature of a delivery under a `whsec_` secret: HMAC-SHA256 keyed with
/// the Base64-decoded part after `whsec_`, over `{id}.{timestamp}.{body}`.
fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a Base64 secret");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let tag = hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn event(event_type: &str, data: Value) -> String {
    json!({
        "type": event_type,
        "timestamp": "2026-07-01T10:00:00.123Z",
        "data": data,
    })
    .to_string()
}

/// A delivery as the product would make it: its headers and body.
struct Delivery {
    id: String,
    timestamp: String,
    signature: Option<String>,
    body: String,
}

impl Delivery {
    /// `body` with id `id`, stamped now and signed under `secret`.
    fn signed(secret: &str, id: &str, body: &str) -> Self {
        let timestamp = now_secs().to_string();
        Self {
            signature: Some(sign(secret, id, &timestamp, body)),
            id: id.to_owned(),
            timestamp,
            body: body.to_owned(),
        }
    }
}

/// What the receiver answered.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

async fn serve() -> Served {
    common::serve_with(reqwest::Client::new()).await
}

impl Served {
    fn app_webhook(&self) -> String {
        format!("{}/sandbox/app-webhook", self.root)
    }

    async fn deliver_with(&self, http: &reqwest::Client, delivery: &Delivery) -> Answer {
        let mut request = http
            .post(self.app_webhook())
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", &delivery.timestamp)
            .body(delivery.body.clone());
        if let Some(signature) = &delivery.signature {
            request = request.header("webhook-signature", signature);
        }
        let response = request.send().await.expect("the sandbox answers");
        Answer {
            status: response.status(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: response.text().await.expect("a body"),
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Answer {
        self.deliver_with(&self.http, delivery).await
    }

    async fn post_json(&self, path: &str, body: Value) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.root))
            .json(&body)
            .send()
            .await
            .expect("the sandbox answers")
            .status()
    }

    fn only_event(&self) -> AppEventRecord {
        let events = self.sandbox.app_events();
        assert_eq!(events.len(), 1, "{events:?}");
        events.into_iter().next().expect("one event")
    }
}

#[test]
fn this_files_signer_signs_the_specs_published_example() {
    // The test vector of the spec's own library tests: "sign function works" in
    // libraries/javascript/src/webhook.test.ts, github.com/standard-webhooks/standard-webhooks.
    assert_eq!(
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[tokio::test]
async fn a_signed_event_is_verified_recorded_and_answered_204() {
    let s = serve().await;
    let body = event(
        "otp.delivered",
        json!({"requestId": "r-1", "phone": "919876543210", "userId": null}),
    );
    let delivery = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_1", &body);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let answer = s.deliver(&delivery).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.body, "");
    let record = s.only_event();
    assert!(record.verified, "{record:?}");
    assert_eq!(record.reason, None);
    assert_eq!(
        record.matched,
        vec![SignatureMatch {
            position: 0,
            secret: 0
        }]
    );
    assert_eq!(record.seq, 1);
    assert_eq!(record.attempt, 1);
    assert_eq!(record.webhook_id.as_deref(), Some("msg_1"));
    assert_eq!(
        record.webhook_timestamp.as_deref(),
        Some(delivery.timestamp.as_str())
    );
    assert_eq!(record.webhook_signature, delivery.signature);
    assert_eq!(record.event_type.as_deref(), Some("otp.delivered"));
    assert_eq!(record.timestamp, Some(json!("2026-07-01T10:00:00.123Z")));
    assert_eq!(
        record.data,
        Some(json!({"requestId": "r-1", "phone": "919876543210", "userId": null}))
    );
    assert_eq!(record.unparsed_body, None);
    assert_eq!(record.status, 204);
    assert!(record.received_at_ms >= before);
    assert!(record.answered_at_ms >= Some(record.received_at_ms));
    assert!(!record.caller_left);

    // The same over HTTP, in camelCase.
    let listed = s.get_json("/sandbox/app-events").await;
    assert_eq!(listed["total"], 1);
    let listed = &listed["events"][0];
    assert_eq!(listed["webhookId"], "msg_1");
    assert_eq!(listed["webhookTimestamp"], delivery.timestamp.as_str());
    assert_eq!(listed["type"], "otp.delivered");
    assert_eq!(listed["data"]["requestId"], "r-1");
    assert_eq!(listed["verified"], true);
    assert_eq!(listed["reason"], Value::Null);
    assert_eq!(listed["matched"], json!([{"position": 0, "secret": 0}]));
    assert_eq!(listed["status"], 204);
    assert_eq!(listed["attempt"], 1);
    assert!(listed["receivedAtMs"].as_u64().is_some());
    assert!(listed["answeredAtMs"].as_u64().is_some());
}

#[tokio::test]
async fn forged_stale_and_unsigned_deliveries_are_401_and_recorded_unverified() {
    let s = serve().await;
    let body = event("otp.delivered", json!({"requestId": "r-2"}));
    let good = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_2", &body);

    let tampered = Delivery {
        body: body.replace("r-2", "r-3"),
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_2", &body)
    };
    let stranger = Delivery::signed(STRANGER_SECRET, "msg_2", &body);
    let unsigned = Delivery {
        signature: None,
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_2", &body)
    };
    let ten_minutes_ago = (now_secs() - 600).to_string();
    let stale = Delivery {
        signature: Some(sign(
            DEFAULT_APP_WEBHOOK_SECRET,
            "msg_2",
            &ten_minutes_ago,
            &body,
        )),
        timestamp: ten_minutes_ago,
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_2", &body)
    };
    // The signature of another id, or another timestamp, is not this one's.
    let other_id = Delivery {
        id: "msg_3".into(),
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_2", &body)
    };
    let cases = [
        (
            &tampered,
            AppWebhookRejection::BadSignature,
            "bad signature",
        ),
        (
            &stranger,
            AppWebhookRejection::BadSignature,
            "bad signature",
        ),
        (&unsigned, AppWebhookRejection::NoSignature, "no signature"),
        (
            &stale,
            AppWebhookRejection::StaleTimestamp,
            "stale timestamp",
        ),
        (
            &other_id,
            AppWebhookRejection::BadSignature,
            "bad signature",
        ),
    ];
    // A script is for verified deliveries: none of these pops it.
    s.sandbox.script_app_webhook(vec![ScriptedAppAnswer {
        status: Some(503),
        ..ScriptedAppAnswer::default()
    }]);
    for (delivery, _, words) in &cases {
        let answer = s.deliver(delivery).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{words}");
        let error: Value = serde_json::from_str(&answer.body).expect("a JSON error");
        assert_eq!(error, json!({"error": words}));
    }
    let events = s.sandbox.app_events();
    assert_eq!(events.len(), cases.len());
    for (record, (_, reason, _)) in events.iter().zip(&cases) {
        assert!(!record.verified, "{record:?}");
        assert_eq!(record.reason, Some(*reason));
        assert_eq!(record.status, 401);
        assert!(record.matched.is_empty());
        // What it claimed to be is still shown.
        assert_eq!(record.event_type.as_deref(), Some("otp.delivered"));
    }
    let listed = s.get_json("/sandbox/app-events").await;
    let reasons: Vec<&Value> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["reason"])
        .collect();
    assert_eq!(
        reasons,
        [
            "bad signature",
            "bad signature",
            "no signature",
            "stale timestamp",
            "bad signature"
        ]
    );
    // Attempts count per id, verified or not.
    let attempts: Vec<u32> = events.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 4, 1]);

    assert_eq!(
        s.deliver(&good).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(s.sandbox.app_events_received(), 6);
    assert_eq!(s.sandbox.app_events_verified(), 1);
}

#[tokio::test]
async fn a_future_timestamp_bad_headers_and_bodies_that_are_no_event_are_refused() {
    let s = serve().await;
    let body = event("otp.delivered", json!({}));
    let in_ten_minutes = (now_secs() + 600).to_string();
    let future = Delivery {
        signature: Some(sign(
            DEFAULT_APP_WEBHOOK_SECRET,
            "msg_4",
            &in_ten_minutes,
            &body,
        )),
        timestamp: in_ten_minutes,
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_4", &body)
    };
    let millis = (now_secs() * 1_000).to_string();
    let in_millis = Delivery {
        signature: Some(sign(DEFAULT_APP_WEBHOOK_SECRET, "msg_4", &millis, &body)),
        timestamp: millis,
        ..Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_4", &body)
    };
    let dotted = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg.4", &body);
    let not_json = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_5", "type=otp.delivered");
    let no_event = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_6", r#"{"requestId":"r"}"#);
    for (delivery, words) in [
        (&future, "future timestamp"),
        (&in_millis, "future timestamp"),
        (&dotted, "bad webhook-id"),
        (&not_json, "not JSON"),
        (&no_event, "not an event"),
    ] {
        let answer = s.deliver(delivery).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{words}");
        assert_eq!(
            serde_json::from_str::<Value>(&answer.body).ok(),
            Some(json!({"error": words}))
        );
    }
    let events = s.sandbox.app_events();
    let not_json = &events[3];
    assert_eq!(not_json.reason, Some(AppWebhookRejection::NotJson));
    // Signed right: the signature is shown to have verified, the body is what failed.
    assert_eq!(not_json.matched.len(), 1);
    assert_eq!(
        not_json.unparsed_body.as_deref(),
        Some("type=otp.delivered")
    );
    assert_eq!(s.sandbox.app_events_verified(), 0);
}

#[tokio::test]
async fn any_signature_under_any_secret_verifies_for_rotation() {
    let s = common::serve_config(
        SandboxConfig {
            api_key: KEY.into(),
            app_webhook_secrets: vec![DEFAULT_APP_WEBHOOK_SECRET.into(), NEXT_SECRET.into()],
            ..SandboxConfig::default()
        },
        reqwest::Client::new(),
    )
    .await;
    let body = event("user.created", json!({"userId": "u-1"}));
    // The sender rotating: its old secret (one the receiver no longer holds) first,
    // then its new one.
    let mut rotating = Delivery::signed(STRANGER_SECRET, "msg_7", &body);
    let under_default = sign(
        DEFAULT_APP_WEBHOOK_SECRET,
        "msg_7",
        &rotating.timestamp,
        &body,
    );
    rotating.signature = Some(format!(
        "{} {under_default}",
        rotating.signature.as_deref().unwrap_or_default()
    ));
    assert_eq!(s.deliver(&rotating).await.status, StatusCode::NO_CONTENT);
    // The receiver's side: a delivery under its second secret.
    let under_next = Delivery::signed(NEXT_SECRET, "msg_8", &body);
    assert_eq!(s.deliver(&under_next).await.status, StatusCode::NO_CONTENT);
    // Both of the receiver's secrets, and an asymmetric entry it cannot check.
    let mut both = Delivery::signed(NEXT_SECRET, "msg_9", &body);
    both.signature = Some(format!(
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== {} {}",
        sign(DEFAULT_APP_WEBHOOK_SECRET, "msg_9", &both.timestamp, &body),
        both.signature.as_deref().unwrap_or_default()
    ));
    assert_eq!(s.deliver(&both).await.status, StatusCode::NO_CONTENT);

    let matched: Vec<Vec<SignatureMatch>> = s
        .sandbox
        .app_events()
        .into_iter()
        .map(|e| {
            assert!(e.verified, "{e:?}");
            e.matched
        })
        .collect();
    let at = |position, secret| SignatureMatch { position, secret };
    assert_eq!(
        matched,
        [vec![at(1, 0)], vec![at(0, 1)], vec![at(1, 0), at(2, 1)],]
    );
}

#[tokio::test]
async fn scripted_answers_come_in_order_then_204() {
    let s = serve().await;
    assert_eq!(
        s.post_json(
            "/sandbox/script-app-webhook",
            json!({"answers": [{"status": 500}, {"status": 503, "retryAfter": 2}, {"status": 500}]}),
        )
        .await,
        StatusCode::NO_CONTENT
    );
    // Appended to what is queued.
    s.sandbox.script_app_webhook(vec![ScriptedAppAnswer {
        status: Some(410),
        ..ScriptedAppAnswer::default()
    }]);
    let body = event("otp.failed", json!({"requestId": "r-9"}));
    let mut answers = Vec::new();
    for _ in 0..6 {
        // A retry: the same id, a new timestamp and signature.
        let answer = s
            .deliver(&Delivery::signed(
                DEFAULT_APP_WEBHOOK_SECRET,
                "msg_10",
                &body,
            ))
            .await;
        answers.push((answer.status.as_u16(), answer.retry_after));
    }
    assert_eq!(
        answers,
        [
            (500, None),
            (503, Some("2".to_owned())),
            (500, None),
            (410, None),
            (204, None),
            (204, None),
        ]
    );
    let events = s.sandbox.app_events();
    let recorded: Vec<(u32, u16, Option<u64>)> = events
        .iter()
        .map(|e| (e.attempt, e.status, e.retry_after))
        .collect();
    assert_eq!(
        recorded,
        [
            (1, 500, None),
            (2, 503, Some(2)),
            (3, 500, None),
            (4, 410, None),
            (5, 204, None),
            (6, 204, None),
        ]
    );
    assert!(events.iter().all(|e| e.verified));
}

#[tokio::test]
async fn scripts_that_are_no_answer_are_refused() {
    let s = serve().await;
    for bad in [
        json!({"answers": [{"status": 99}]}),
        json!({"answers": [{"status": 700}]}),
        json!({"answers": [{"statusCode": 500}]}),
        json!({"replies": []}),
    ] {
        let status = s
            .post_json("/sandbox/script-app-webhook", bad.clone())
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    let body = event("otp.sent", json!({}));
    let answer = s
        .deliver(&Delivery::signed(
            DEFAULT_APP_WEBHOOK_SECRET,
            "msg_11",
            &body,
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "nothing was queued");
}

#[tokio::test]
async fn a_hang_answers_late_and_a_sender_that_gives_up_is_seen() {
    let s = serve().await;
    assert_eq!(
        s.post_json(
            "/sandbox/script-app-webhook",
            json!({"answers": [{"hangMs": 700}, {"hangMs": 20000, "status": 200}]}),
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let body = event("otp.sent", json!({"requestId": "r-12"}));

    let started = Instant::now();
    let answer = s
        .deliver(&Delivery::signed(
            DEFAULT_APP_WEBHOOK_SECRET,
            "msg_12",
            &body,
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= Duration::from_millis(700));
    let record = s.only_event();
    assert_eq!(record.hang_ms, Some(700));
    let waited = record.answered_at_ms.expect("answered") - record.received_at_ms;
    assert!(waited >= 700, "{waited}");

    // A sender with a 300 ms timeout gives up on a 20 s hang; the sandbox notes it left.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("a client");
    let delivery = Delivery::signed(DEFAULT_APP_WEBHOOK_SECRET, "msg_12", &body);
    let started = Instant::now();
    let gave_up = impatient
        .post(s.app_webhook())
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", &delivery.timestamp)
        .header(
            "webhook-signature",
            delivery.signature.as_deref().unwrap_or_default(),
        )
        .body(delivery.body.clone())
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert!(started.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + PATIENCE;
    let hung = loop {
        let hung = s.sandbox.app_events().pop().expect("the second attempt");
        if hung.caller_left || Instant::now() > deadline {
            break hung;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((hung.attempt, hung.status), (2, 200));
    assert_eq!(hung.hang_ms, Some(20_000));
    assert!(hung.caller_left, "{hung:?}");
    assert_eq!(hung.answered_at_ms, None);
}

#[tokio::test]
async fn stats_count_attempts_and_reset_forgets_them() {
    let s = serve().await;
    let body = event("otp.sent", json!({}));
    s.sandbox.script_app_webhook(vec![
        ScriptedAppAnswer {
            status: Some(500),
            ..ScriptedAppAnswer::default()
        },
        ScriptedAppAnswer {
            status: Some(500),
            ..ScriptedAppAnswer::default()
        },
    ]);
    s.deliver(&Delivery::signed(
        DEFAULT_APP_WEBHOOK_SECRET,
        "msg_13",
        &body,
    ))
    .await;
    s.deliver(&Delivery::signed(STRANGER_SECRET, "msg_13", &body))
        .await;
    let stats = s.get_json("/sandbox/stats").await;
    assert_eq!(stats["appEventsReceived"], 2);
    assert_eq!(stats["appEventsVerified"], 1);
    assert_eq!(
        (
            s.sandbox.app_events_received(),
            s.sandbox.app_events_verified()
        ),
        (2, 1)
    );

    assert_eq!(
        s.post_json("/sandbox/reset", json!({})).await,
        StatusCode::NO_CONTENT
    );
    assert!(s.sandbox.app_events().is_empty());
    let stats = s.get_json("/sandbox/stats").await;
    assert_eq!(stats["appEventsReceived"], 0);
    assert_eq!(stats["appEventsVerified"], 0);
    assert_eq!(
        s.get_json("/sandbox/app-events").await,
        json!({"events": [], "total": 0})
    );
    // The script left over is forgotten too, and ids count from 1 again.
    let answer = s
        .deliver(&Delivery::signed(
            DEFAULT_APP_WEBHOOK_SECRET,
            "msg_13",
            &body,
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let record = s.only_event();
    assert_eq!((record.seq, record.attempt), (1, 1));
}

#[tokio::test]
async fn the_latest_attempts_can_be_asked_for() {
    let s = serve().await;
    for id in ["msg_a", "msg_b", "msg_c"] {
        s.deliver(&Delivery::signed(
            DEFAULT_APP_WEBHOOK_SECRET,
            id,
            &event("otp.sent", json!({})),
        ))
        .await;
    }
    let latest = s.get_json("/sandbox/app-events?latest=2").await;
    assert_eq!(latest["total"], 3);
    let ids: Vec<&Value> = latest["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["webhookId"])
        .collect();
    assert_eq!(ids, ["msg_b", "msg_c"]);
}

#[tokio::test]
async fn the_inbox_page_has_the_events_panel() {
    let s = serve().await;
    let page = s
        .http
        .get(format!("{}/sandbox/", s.root))
        .send()
        .await
        .expect("the sandbox answers")
        .text()
        .await
        .expect("the page");
    assert!(page.contains(r#"id="app-events""#));
    assert!(page.contains("Events to the app"));
    // Every field of an event comes from the sender: it goes in as text.
    assert!(page.contains("'data-webhook-id': id"));
    assert!(page.contains("'data-attempts': last.attempt"));
}

#[test]
fn the_binary_reads_its_secrets_from_one_comma_separated_setting() {
    use clap::Parser;
    if std::env::vars().all(|(name, _)| name != "SANDBOX_APP_WEBHOOK_SECRET") {
        let defaults = wati_sandbox::SandboxArgs::try_parse_from(["wati-sandbox"])
            .expect("no flags are needed")
            .into_config()
            .expect("the defaults are valid");
        assert_eq!(
            defaults.app_webhook_secrets,
            [DEFAULT_APP_WEBHOOK_SECRET.to_owned()]
        );
    }
    let config = wati_sandbox::SandboxArgs::try_parse_from([
        "wati-sandbox",
        "--app-webhook-secret",
        &format!("{NEXT_SECRET}, {STRANGER_SECRET}"),
    ])
    .expect("the flag parses")
    .into_config()
    .expect("valid");
    assert_eq!(config.app_webhook_secrets, [NEXT_SECRET, STRANGER_SECRET]);
    for bad in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_c2hvcnQ=",
        "whsec_!",
        "",
    ] {
        let refused = wati_sandbox::SandboxArgs::try_parse_from([
            "wati-sandbox",
            "--app-webhook-secret",
            bad,
        ])
        .expect("the flag parses")
        .into_config();
        assert!(refused.is_err(), "{bad:?}");
    }
}
