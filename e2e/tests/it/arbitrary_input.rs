//! Arbitrary bodies and phone strings never get a 5xx from send-otp, verify-otp or the
//! receipts webhook: each gets a 2xx or a 4xx with the spec's error body.

use otp_e2e::{TestEnv, WEBHOOK_SECRET};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn endpoints() -> [String; 3] {
    [
        "/api/auth/send-otp".into(),
        "/api/auth/verify-otp".into(),
        format!("/api/webhooks/wati/{WEBHOOK_SECRET}"),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[0-9+ ()-]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("templateMessageSent_v2"),
            Just("sentMessageDELIVERED_v2"),
            Just("sentMessageREAD_v2"),
            Just("templateMessageFailed"),
        ]
        .prop_map(|e| Value::String(e.to_owned())),
        any::<u128>().prop_map(|n| Value::String(uuid::Uuid::from_u128(n).to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("phone".to_owned()),
                    Just("code".to_owned()),
                    Just("eventType".to_owned()),
                    Just("localMessageId".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("failedCode".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Phone-like strings: plausible digits and separators, and anything at all.
fn phone_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\+?[0-9 ().-]{0,40}",
        "\\+?9[0-9]{5,14}",
        ".{0,64}",
        "[0-9]{200,400}",
    ]
}

/// Checks one answer: a 2xx, or a 4xx with `{"status":"error","code","message"}`.
async fn check(env: &TestEnv, path: &str, body: reqwest::Body) -> Result<(), TestCaseError> {
    let response = env
        .http
        .post(format!("{}{path}", env.api_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    prop_assert!(status < 500, "{path} answered {status}: {body}");
    if status >= 400 {
        prop_assert_eq!(&body["status"], "error", "{} {}: {}", path, status, body);
        prop_assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{}",
            body
        );
    } else {
        // The webhook answers WATI with a bare acknowledgement.
        let expected = if path.contains("/webhooks/") {
            "ok"
        } else {
            "success"
        };
        prop_assert_eq!(&body["status"], expected, "{} {}: {}", path, status, body);
    }
    Ok(())
}

#[test]
fn arbitrary_input_gets_a_2xx_or_a_spec_4xx_never_a_5xx() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut env = runtime.block_on(TestEnv::new());
    let _api = runtime.block_on(env.start_api());
    let config = Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    };

    let endpoints = endpoints();
    TestRunner::new(config.clone())
        .run(&(json_value(), 0..3usize), |(body, endpoint)| {
            let bytes = serde_json::to_vec(&body).expect("json");
            runtime.block_on(check(&env, &endpoints[endpoint], bytes.into()))
        })
        .expect("arbitrary JSON bodies");

    TestRunner::new(config.clone())
        .run(
            &(phone_string(), ".{0,12}", 0..2usize),
            |(phone, code, endpoint)| {
                let body = json!({"phone": phone, "code": code});
                let bytes = serde_json::to_vec(&body).expect("json");
                runtime.block_on(check(&env, &endpoints[endpoint], bytes.into()))
            },
        )
        .expect("arbitrary phone strings");

    TestRunner::new(config)
        .run(
            &(prop::collection::vec(any::<u8>(), 0..512), 0..3usize),
            |(bytes, endpoint)| runtime.block_on(check(&env, &endpoints[endpoint], bytes.into())),
        )
        .expect("arbitrary bytes");
}
