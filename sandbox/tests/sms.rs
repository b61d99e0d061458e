//! Twilio's Messages endpoint (`POST …/2010-04-01/Accounts/{sid}/Messages.json`) and its
//! signed status callbacks, over HTTP, heard by a small receiver on a local port.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{
    DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN, ScriptedSms, SmsOutcome, SmsSettings,
};

mod common;

use common::{Served, form};

const SID: &str = DEFAULT_TWILIO_ACCOUNT_SID;
const TOKEN: &str = DEFAULT_TWILIO_AUTH_TOKEN;
const TO: &str = "+447700900123";
const PHONE: &str = "447700900123";
const FROM: &str = "+15005550006";
const BODY: &str = "Your code is 123456\n\n@example.com #123456";
/// Longest wait for something the sandbox is due to do; a deadline, not a delay.
const PATIENCE: Duration = Duration::from_secs(5);

async fn serve() -> Served {
    let s = common::serve_with(reqwest::Client::new()).await;
    s.sandbox.set_sms_settings(SmsSettings {
        delivered_after: Duration::from_millis(50),
    });
    s
}

/// What the sandbox answered: status, `Retry-After`, body.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

impl Served {
    fn messages_url(&self, account_sid: &str) -> String {
        format!(
            "{}/twilio-run-1/2010-04-01/Accounts/{account_sid}/Messages.json",
            self.root
        )
    }

    async fn sms_as(&self, user: &str, password: &str, params: &[(&str, &str)]) -> Answer {
        let response = self
            .http
            .post(self.messages_url(SID))
            .basic_auth(user, Some(password))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params))
            .send()
            .await
            .expect("the sandbox answers");
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Answer {
            status,
            retry_after,
            body: response.json().await.expect("a JSON body"),
        }
    }

    async fn sms(&self, params: &[(&str, &str)]) -> Answer {
        self.sms_as(SID, TOKEN, params).await
    }
}

/// A form body, encoded by the `url` crate (through reqwest), as a client library would.
fn twilio_error(code: u32, message: &str, status: u16) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

/// One callback as the receiver got it.
#[derive(Clone, Debug)]
struct Callback {
    /// Path and query, as requested.
    uri: String,
    signature: String,
    content_type: String,
    /// The form's pairs, decoded by the `url` crate (through reqwest), in order.
    params: Vec<(String, String)>,
}

impl Callback {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Heard {
    callbacks: Mutex<Vec<Callback>>,
}

impl Heard {
    fn all(&self) -> Vec<Callback> {
        self.callbacks.lock().expect("not poisoned").clone()
    }

    fn statuses(&self, sid: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|c| c.param("MessageSid") == Some(sid))
            .map(|c| c.param("MessageStatus").unwrap_or_default().to_owned())
            .collect()
    }
}

async fn hear(
    State(heard): State<Arc<Heard>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let form = String::from_utf8(body.to_vec()).expect("UTF-8");
    let params = reqwest::Url::parse(&format!("http://form.invalid/?{form}"))
        .expect("a form")
        .query_pairs()
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    heard
        .callbacks
        .lock()
        .expect("not poisoned")
        .push(Callback {
            uri: uri.to_string(),
            signature: header("x-twilio-signature"),
            content_type: header("content-type"),
            params,
        });
    "<Response/>"
}

/// Starts a receiver that drops its first `dropped` connections unanswered; returns its
/// base URL (`http://127.0.0.1:port`).
async fn receiver(dropped: usize) -> (String, Arc<Heard>) {
    let heard = Arc::new(Heard::default());
    let app = Router::new()
        .route("/sms-status", post(hear))
        .with_state(heard.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move {
        for _ in 0..dropped {
            let (connection, _) = listener.accept().await.expect("a connection");
            drop(connection);
        }
        axum::serve(listener, app).await
    });
    (base, heard)
}

/// Twilio's construction, written here apart from the sandbox's: HMAC-SHA1 keyed with the
/// token over the URL and each parameter, sorted by name, as name then value.
fn expected_signature(url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = url.to_owned();
    for (name, value) in &sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
    STANDARD.encode(hmac::sign(&key, signed.as_bytes()).as_ref())
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_message_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_good_send_gets_201_with_twilios_message_and_is_filed_as_an_sms() {
    let s = serve().await;
    let answer = s.sms(&[("To", TO), ("From", FROM), ("Body", BODY)]).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let message = answer.body;
    let sid = message["sid"].as_str().expect("a sid").to_owned();
    assert!(is_message_sid(&sid), "{sid}");
    for (field, expected) in [
        ("status", json!("queued")),
        ("to", json!(TO)),
        ("from", json!(FROM)),
        ("body", json!(BODY)),
        ("num_segments", json!("1")),
        ("error_code", Value::Null),
        ("error_message", Value::Null),
        ("account_sid", json!(SID)),
        ("api_version", json!("2010-04-01")),
        ("direction", json!("outbound-api")),
        ("messaging_service_sid", Value::Null),
        ("date_sent", Value::Null),
        ("price", Value::Null),
    ] {
        assert_eq!(message[field], expected, "{field}");
    }
    assert_eq!(
        message["uri"],
        format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
    );
    let created = message["date_created"].as_str().expect("a date");
    assert!(
        created.ends_with(" +0000") && created.len() == 31,
        "{created}"
    );

    // Filed under the number's digits, with its body as sent; not a WhatsApp message.
    let filed = s.sandbox.sms_messages(TO);
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].phone, PHONE);
    assert_eq!(filed[0].text, BODY);
    assert_eq!(filed[0].channel, wati_sandbox::Channel::Sms);
    assert_eq!(filed[0].sid.as_deref(), Some(sid.as_str()));
    assert_eq!(filed[0].from.as_deref(), Some(FROM));
    assert_eq!(s.sandbox.sms_messages(PHONE).len(), 1);
    assert!(s.sandbox.messages(PHONE).is_empty());
    assert_eq!(s.sandbox.accepted(), 0, "WATI accepted nothing");
    assert_eq!(s.sandbox.sms_accepted(), 1);
    let last_code = s
        .http
        .get(format!("{}/sandbox/last-code/{PHONE}", s.root))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(
        last_code.status(),
        StatusCode::NOT_FOUND,
        "WhatsApp codes only"
    );

    // Over HTTP, with or without the `+`.
    for path in [
        format!("/sandbox/sms/{PHONE}"),
        "/sandbox/sms/%2B447700900123".into(),
    ] {
        let listed = s.get_json(&path).await;
        assert_eq!(listed["messages"][0]["text"], BODY, "{path}");
        assert_eq!(listed["messages"][0]["channel"], "sms");
        assert_eq!(listed["messages"][0]["sid"], sid.as_str());
    }
    let calls = s
        .get_json(&format!("/sandbox/sms-calls?phone={PHONE}"))
        .await;
    let call = &calls["calls"][0];
    assert_eq!(call["status"], 201);
    assert_eq!(call["sid"], sid.as_str());
    assert_eq!(call["to"], TO);
    assert_eq!(call["body"], BODY);
    assert_eq!(call["pathPrefix"], "/twilio-run-1");
    assert_eq!(call["errorCode"], Value::Null);
    let stats = s.get_json("/sandbox/stats").await;
    assert_eq!(stats["smsCalls"], 1);
    assert_eq!(stats["smsAccepted"], 1);
    assert_eq!(stats["accepted"], 0);
}

#[tokio::test]
async fn a_send_through_a_messaging_service_is_accepted_with_no_sender_yet() {
    let s = serve().await;
    let service = "MG0123456789abcdef0123456789abcdef";
    let answer = s
        .sms(&[("To", TO), ("MessagingServiceSid", service), ("Body", BODY)])
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["status"], "accepted");
    assert_eq!(answer.body["messaging_service_sid"], service);
    assert_eq!(answer.body["from"], Value::Null);
    assert_eq!(answer.body["num_segments"], "0");
    assert_eq!(
        s.sandbox.sms_messages(PHONE)[0].from.as_deref(),
        Some(service)
    );
}

#[tokio::test]
async fn wrong_credentials_or_another_accounts_path_get_401_with_20003() {
    let s = serve().await;
    let authenticate = twilio_error(20003, "Authenticate", 401);
    let good = [("To", TO), ("From", FROM), ("Body", BODY)];
    for (user, password) in [(SID, "wrong-token"), ("AC0000", TOKEN), ("", "")] {
        let answer = s.sms_as(user, password, &good).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{user}:{password}");
        assert_eq!(answer.body, authenticate);
    }
    // No credentials at all.
    let bare = s
        .http
        .post(s.messages_url(SID))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&good))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    // The right credentials for another account's path.
    let other = s
        .http
        .post(s.messages_url("AC00000000000000000000000000000000"))
        .basic_auth(SID, Some(TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&good))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(other.json::<Value>().await.expect("JSON"), authenticate);
    assert!(
        s.sandbox.sms_calls(PHONE).is_empty(),
        "refused before the log"
    );
    assert!(s.sandbox.sms_messages(PHONE).is_empty());

    // Another path of Twilio's API is not found, in Twilio's shape.
    let calls = s
        .http
        .post(format!("{}/2010-04-01/Accounts/{SID}/Calls.json", s.root))
        .basic_auth(SID, Some(TOKEN))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(calls.status(), StatusCode::NOT_FOUND);
    assert_eq!(calls.json::<Value>().await.expect("JSON")["code"], 20404);
}

#[tokio::test]
async fn missing_or_invalid_parameters_get_400_with_twilios_codes() {
    let s = serve().await;
    let cases: [(&[(&str, &str)], Value); 6] = [
        (
            &[("From", FROM), ("Body", BODY)],
            twilio_error(21604, "A 'To' phone number is required.", 400),
        ),
        (
            &[("To", PHONE), ("From", FROM), ("Body", BODY)],
            twilio_error(
                21211,
                "The 'To' number 447700900123 is not a valid phone number.",
                400,
            ),
        ),
        (
            &[("To", "+44 7700 900123"), ("From", FROM), ("Body", BODY)],
            twilio_error(
                21211,
                "The 'To' number +44 7700 900123 is not a valid phone number.",
                400,
            ),
        ),
        (
            &[("To", TO), ("Body", BODY)],
            twilio_error(21603, "A 'From' phone number is required.", 400),
        ),
        (
            &[("To", TO), ("From", FROM), ("Body", "")],
            twilio_error(21602, "Message body is required.", 400),
        ),
        (
            &[
                ("To", TO),
                ("From", FROM),
                ("Body", BODY),
                ("ValidityPeriod", "36001"),
            ],
            twilio_error(
                21624,
                "Validity period can only be set to integers between 1 and 36,000 seconds (10 hours max).",
                400,
            ),
        ),
    ];
    for (params, expected) in cases {
        let answer = s.sms(params).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(answer.body, expected, "{params:?}");
    }
    assert_eq!(s.sandbox.sms_accepted(), 0);
    // Each refusal is logged with its code; none reaches the phone.
    let codes: Vec<Option<u32>> = s
        .sandbox
        .sms_calls(PHONE)
        .iter()
        .map(|c| c.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            Some(21211),
            Some(21211),
            Some(21603),
            Some(21602),
            Some(21624)
        ]
    );
    assert!(s.sandbox.sms_messages(PHONE).is_empty());
}

#[tokio::test]
async fn scripted_answers_refuse_with_twilios_codes_in_order_then_service_resumes() {
    let s = serve().await;
    // Over HTTP, to check the script's field names.
    let scripted = s
        .http
        .post(format!("{}/sandbox/script-sms", s.root))
        .json(&json!({"phone": TO, "replies": [
            {"code": 21211},
            {"code": 21408},
            {"code": 21610},
            {"code": 21614},
            {"code": 20429, "retryAfter": 3},
            {"status": 500},
            {"status": 503, "message": "Down for maintenance"},
        ]}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(scripted.status(), StatusCode::NO_CONTENT);
    let expected = [
        (400, 21211, None),
        (400, 21408, None),
        (400, 21610, None),
        (400, 21614, None),
        (429, 20429, Some(3)),
        (500, 20500, None),
        (503, 20503, None),
    ];
    let good = [("To", TO), ("From", FROM), ("Body", BODY)];
    for (status, code, retry_after) in expected {
        let answer = s.sms(&good).await;
        assert_eq!(answer.status.as_u16(), status, "{code}");
        assert_eq!(answer.body["code"], code);
        assert_eq!(answer.body["status"], status);
        assert_eq!(
            answer.body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
        assert_eq!(answer.retry_after, retry_after, "{code}");
    }
    let answer = s.sms(&good).await;
    assert_eq!(answer.status, StatusCode::CREATED, "scripts are used once");
    assert_eq!(s.sandbox.sms_messages(PHONE).len(), 1);
    let statuses: Vec<u16> = s
        .sandbox
        .sms_calls(PHONE)
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [400, 400, 400, 400, 429, 500, 503, 201]);
    // The messages are Twilio's words for each code.
    s.sandbox.script_sms(
        TO,
        vec![ScriptedSms {
            code: Some(21610),
            ..ScriptedSms::default()
        }],
    );
    assert_eq!(
        s.sms(&good).await.body,
        twilio_error(21610, "Attempt to send to unsubscribed recipient", 400)
    );
}

#[tokio::test]
async fn a_send_whose_caller_gave_up_still_goes_out() {
    let s = serve().await;
    s.sandbox.script_sms(
        TO,
        vec![ScriptedSms {
            delay_ms: Some(300),
            ..ScriptedSms::default()
        }],
    );
    let started = Instant::now();
    let timed_out = s
        .http
        .post(s.messages_url(SID))
        .basic_auth(SID, Some(TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("To", TO), ("From", FROM), ("Body", BODY)]))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    wait_until("the message is filed", || {
        s.sandbox.sms_messages(PHONE).len() == 1
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_accepted_message_gets_sent_then_delivered_callbacks_signed_as_twilio_signs() {
    // The signer reproduces Twilio's published example.
    let published = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    assert_eq!(
        wati_sandbox::twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &published
        ),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );

    let (base, heard) = receiver(0).await;
    let s = serve().await;
    // The query string is part of what is signed.
    let callback_url = format!("{base}/sms-status?run=7&tag=a%20b");
    let asked_at_ms = epoch_ms();
    let answer = s
        .sms(&[
            ("To", TO),
            ("From", FROM),
            ("Body", BODY),
            ("StatusCallback", &callback_url),
            ("ValidityPeriod", "600"),
        ])
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let sid = answer.body["sid"].as_str().expect("a sid").to_owned();

    wait_until("both callbacks are recorded", || {
        s.sandbox.sms_callbacks_posted() == 2
    })
    .await;
    assert_eq!(heard.statuses(&sid), ["sent", "delivered"]);
    let callbacks = heard.all();
    for callback in &callbacks {
        assert_eq!(callback.uri, "/sms-status?run=7&tag=a%20b");
        assert_eq!(callback.content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            callback.signature,
            expected_signature(&callback_url, &callback.params),
            "{callback:?}"
        );
        for (name, value) in [
            ("MessageSid", sid.as_str()),
            ("SmsSid", sid.as_str()),
            ("AccountSid", SID),
            ("From", FROM),
            ("To", TO),
            ("ApiVersion", "2010-04-01"),
        ] {
            assert_eq!(callback.param(name), Some(value), "{name}");
        }
        assert_eq!(callback.param("SmsStatus"), callback.param("MessageStatus"));
        assert_eq!(callback.param("ErrorCode"), None);
    }
    assert_eq!(callbacks[0].param("RawDlrDoneDate"), None, "not on sent");
    let done = callbacks[1].param("RawDlrDoneDate").expect("on delivered");
    assert!(
        done.len() == 10 && done.bytes().all(|b| b.is_ascii_digit()),
        "{done}"
    );

    // Recorded as posted, signature and parameters included.
    let records = s.sandbox.sms_callbacks();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].message_status, "sent");
    assert_eq!(records[1].message_status, "delivered");
    for record in &records {
        assert_eq!(record.message_sid, sid);
        assert_eq!(record.phone, PHONE);
        assert_eq!(record.url, callback_url);
        assert_eq!((record.status, record.attempts), (Some(200), 1));
        assert_eq!(record.error_code, None);
    }
    assert_eq!(records[0].signature, callbacks[0].signature);
    assert_eq!(records[1].params["MessageStatus"], "delivered");
    // Delivered comes the set 50 ms after acceptance (not after sent's post, which a
    // loaded machine may have held up), and after sent.
    assert!(records[1].posted_at_ms >= asked_at_ms + 50, "{records:?}");
    assert!(records[1].posted_at_ms >= records[0].posted_at_ms);
    let listed = s.get_json("/sandbox/sms-callbacks").await;
    assert_eq!(listed["callbacks"][1]["messageStatus"], "delivered");
    assert_eq!(listed["callbacks"][1]["params"]["To"], TO);
    assert_eq!(s.sandbox.sms_callbacks_failed(), 0);
}

#[tokio::test]
async fn scripts_make_messages_undelivered_failed_or_silent() {
    let (base, heard) = receiver(0).await;
    let s = serve().await;
    let url = format!("{base}/sms-status");
    let numbers = [
        "+447700900201",
        "+447700900202",
        "+447700900203",
        "+447700900204",
    ];
    let scripts = [
        ScriptedSms {
            outcome: Some(SmsOutcome::Undelivered),
            error_code: Some(30007),
            ..ScriptedSms::default()
        },
        ScriptedSms {
            outcome: Some(SmsOutcome::Undelivered),
            ..ScriptedSms::default()
        },
        ScriptedSms {
            outcome: Some(SmsOutcome::Failed),
            ..ScriptedSms::default()
        },
        ScriptedSms {
            outcome: Some(SmsOutcome::Silent),
            ..ScriptedSms::default()
        },
    ];
    let mut sids = Vec::new();
    for (to, script) in numbers.iter().zip(scripts) {
        s.sandbox.script_sms(to, vec![script]);
        let answer = s
            .sms(&[
                ("To", to),
                ("From", FROM),
                ("Body", BODY),
                ("StatusCallback", &url),
            ])
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "accepted all the same");
        sids.push(answer.body["sid"].as_str().expect("a sid").to_owned());
    }

    wait_until("five callbacks are recorded", || {
        s.sandbox.sms_callbacks_posted() == 5
    })
    .await;
    assert_eq!(heard.statuses(&sids[0]), ["sent", "undelivered"]);
    assert_eq!(heard.statuses(&sids[1]), ["sent", "undelivered"]);
    assert_eq!(heard.statuses(&sids[2]), ["failed"], "never sent");
    assert!(heard.statuses(&sids[3]).is_empty());
    let last = |sid: &str| {
        heard
            .all()
            .into_iter()
            .rfind(|c| c.param("MessageSid") == Some(sid))
            .expect("a callback")
    };
    assert_eq!(last(&sids[0]).param("ErrorCode"), Some("30007"));
    assert_eq!(last(&sids[1]).param("ErrorCode"), Some("30003"));
    assert!(last(&sids[1]).param("RawDlrDoneDate").is_some());
    assert_eq!(last(&sids[2]).param("ErrorCode"), Some("30001"));
    assert_eq!(last(&sids[2]).param("RawDlrDoneDate"), None);
    // Every message reached the sandbox's records; the phone shows them all.
    for to in numbers {
        assert_eq!(s.sandbox.sms_messages(to).len(), 1, "{to}");
    }
    let failed = s
        .sandbox
        .sms_callbacks()
        .into_iter()
        .find(|r| r.message_status == "failed")
        .expect("a failed callback");
    assert_eq!(failed.error_code, Some(30001));
}

#[tokio::test]
async fn a_message_queued_past_its_validity_period_fails_with_30036() {
    let (base, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.script_sms(
        TO,
        vec![ScriptedSms {
            queued_ms: Some(1_500),
            ..ScriptedSms::default()
        }],
    );
    let answer = s
        .sms(&[
            ("To", TO),
            ("From", FROM),
            ("Body", BODY),
            ("StatusCallback", &format!("{base}/sms-status")),
            ("ValidityPeriod", "1"),
        ])
        .await;
    let sid = answer.body["sid"].as_str().expect("a sid").to_owned();
    wait_until("the failure is recorded", || {
        s.sandbox.sms_callbacks_posted() == 1
    })
    .await;
    assert_eq!(heard.statuses(&sid), ["failed"]);
    assert_eq!(heard.all()[0].param("ErrorCode"), Some("30036"));
}

#[tokio::test]
async fn a_callback_through_a_messaging_service_names_it_and_the_sender_it_picked() {
    let (base, heard) = receiver(0).await;
    let s = serve().await;
    let service = "MG0123456789abcdef0123456789abcdef";
    s.sms(&[
        ("To", TO),
        ("MessagingServiceSid", service),
        ("Body", BODY),
        ("StatusCallback", &format!("{base}/sms-status")),
    ])
    .await;
    wait_until("both callbacks are recorded", || {
        s.sandbox.sms_callbacks_posted() == 2
    })
    .await;
    let sent = &heard.all()[0];
    assert_eq!(sent.param("MessagingServiceSid"), Some(service));
    assert_eq!(sent.param("From"), Some("+15005550006"));
}

#[tokio::test]
async fn a_callback_that_reached_nobody_is_retried_once() {
    // The receiver drops the first connection, then answers.
    let (base, heard) = receiver(1).await;
    let s = serve().await;
    let answer = s
        .sms(&[
            ("To", TO),
            ("From", FROM),
            ("Body", BODY),
            ("StatusCallback", &format!("{base}/sms-status")),
        ])
        .await;
    let sid = answer.body["sid"].as_str().expect("a sid").to_owned();
    wait_until("both callbacks are recorded", || {
        s.sandbox.sms_callbacks_posted() == 2
    })
    .await;
    assert_eq!(heard.statuses(&sid), ["sent", "delivered"]);
    let attempts: Vec<u32> = s
        .sandbox
        .sms_callbacks()
        .iter()
        .map(|r| r.attempts)
        .collect();
    assert_eq!(attempts, [2, 1]);

    // Nobody listening: each callback is tried twice, then given up.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let nobody = format!(
        "http://{}/sms-status",
        closed.local_addr().expect("an address")
    );
    drop(closed);
    s.sandbox.reset();
    s.sms(&[
        ("To", TO),
        ("From", FROM),
        ("Body", BODY),
        ("StatusCallback", &nobody),
    ])
    .await;
    wait_until("both callbacks are given up", || {
        s.sandbox.sms_callbacks_failed() == 2
    })
    .await;
    for record in s.sandbox.sms_callbacks() {
        assert_eq!((record.status, record.attempts), (None, 2), "{record:?}");
    }
}

#[tokio::test]
async fn reset_forgets_the_sms_side_too() {
    let s = serve().await;
    s.sandbox.script_sms(
        TO,
        vec![ScriptedSms {
            code: Some(21610),
            ..ScriptedSms::default()
        }],
    );
    s.sms(&[("To", "+447700900999"), ("From", FROM), ("Body", BODY)])
        .await;
    s.sandbox.reset();
    assert!(s.sandbox.sms_messages("+447700900999").is_empty());
    assert!(s.sandbox.sms_calls("+447700900999").is_empty());
    assert_eq!(s.sandbox.sms_accepted(), 0);
    let answer = s.sms(&[("To", TO), ("From", FROM), ("Body", BODY)]).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "the script was forgotten"
    );
    assert_eq!(answer.body["sid"].as_str().map(is_message_sid), Some(true));
}

#[test]
fn the_binary_flags_set_the_twilio_account_and_pacing() {
    use clap::Parser;
    if std::env::vars()
        .all(|(name, _)| !name.starts_with("SANDBOX_") && !name.starts_with("TWILIO_"))
    {
        let defaults = wati_sandbox::SandboxArgs::try_parse_from(["wati-sandbox"])
            .expect("no flags are needed")
            .into_config()
            .expect("the defaults are valid");
        assert_eq!(defaults.twilio, wati_sandbox::TwilioAccount::default());
        assert_eq!(defaults.twilio.account_sid, SID);
        assert_eq!(defaults.twilio.auth_token, "sandbox-token");
        assert_eq!(defaults.sms, SmsSettings::default());
        assert_eq!(defaults.sms.delivered_after, Duration::from_millis(300));
    }
    let config = wati_sandbox::SandboxArgs::try_parse_from([
        "wati-sandbox",
        "--twilio-account-sid",
        "AC11111111111111111111111111111111",
        "--twilio-auth-token",
        "t",
        "--sms-delivered-after-ms",
        "20",
    ])
    .expect("the flags parse")
    .into_config()
    .expect("valid");
    assert_eq!(
        config.twilio.account_sid,
        "AC11111111111111111111111111111111"
    );
    assert_eq!(config.twilio.auth_token, "t");
    assert_eq!(config.sms.delivered_after, Duration::from_millis(20));
}

/// Milliseconds since the epoch, as the sandbox records times.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
