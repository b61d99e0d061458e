//! The api's HTTP contract against the real Redis and RabbitMQ: every status, code and
//! message of the spec's HTTP section that needs no delivery.

use std::collections::HashMap;

use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::{Value, json};

const PHONE: &str = "919876543210";

/// The spec's error body; a rate limit or an outage also says when to come back
/// (`retryAfterSeconds`).
fn assert_error(got: &(u16, Value), status: u16, code: &str, message: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    let mut body = got.1.clone();
    let wait = body
        .as_object_mut()
        .and_then(|b| b.remove("retryAfterSeconds"));
    // A send refused while a code is pending says so.
    if let Some(pending) = body.as_object_mut().and_then(|b| b.remove("codePending")) {
        assert_eq!(
            (code, pending),
            ("RATE_LIMITED", json!(true)),
            "{:?}",
            got.1
        );
    }
    assert_eq!(
        wait.is_some(),
        matches!(code, "RATE_LIMITED" | "UNAVAILABLE"),
        "retryAfterSeconds with RATE_LIMITED and UNAVAILABLE only: {:?}",
        got.1
    );
    assert_eq!(
        body,
        json!({"status": "error", "code": code, "message": message}),
    );
}

/// Reads the code of the pending send for `phone` from the sandbox, through a worker.
async fn deliver_and_read_code(env: &TestEnv, phone: &str) -> String {
    let worker = env.start_worker().await;
    let messages = env.wait_for_messages(phone, 1).await;
    worker.stop().await;
    messages[0].code.clone()
}

#[tokio::test]
async fn send_otp_accepts_a_phone_and_answers_202_with_the_spec_body() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let (status, body) = env.send_otp("+91 98765 43210").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["phone"], PHONE);
    assert_eq!(body["expiresIn"], "5 minutes");
    assert_eq!(body["expiresInSeconds"], 300);
    let request_id = body["requestId"].as_str().expect("requestId");
    assert!(uuid::Uuid::parse_str(request_id).is_ok());
    let (status, body) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["requestId"], request_id);
    assert!(body["updatedAt"].as_str().is_some_and(|t| t.contains('T')));
}

#[tokio::test]
async fn phone_is_required_and_must_be_valid() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let required = "Please provide phone number";
    let invalid = "Invalid phone number format";
    for body in [
        json!({}),
        json!({"phone": ""}),
        json!({"phone": null}),
        json!({"phone": "  "}),
    ] {
        let got = env.post("/api/auth/send-otp", body).await;
        assert_error(&got, 400, "PHONE_REQUIRED", required);
        let got = env
            .post("/api/auth/verify-otp", json!({"code": "123456"}))
            .await;
        assert_error(&got, 400, "PHONE_REQUIRED", required);
    }
    for phone in [
        json!("abc"),
        json!("12"),
        json!("+999 1234567"),
        json!(919876543210u64),
        json!(["9"]),
    ] {
        let got = env
            .post("/api/auth/send-otp", json!({"phone": phone}))
            .await;
        assert_error(&got, 400, "PHONE_INVALID", invalid);
        let got = env
            .post(
                "/api/auth/verify-otp",
                json!({"phone": phone, "code": "123456"}),
            )
            .await;
        assert_error(&got, 400, "PHONE_INVALID", invalid);
    }
}

#[tokio::test]
async fn verify_needs_a_code_and_a_pending_one() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    for code in [json!(null), json!(""), json!(123456)] {
        let got = env
            .post(
                "/api/auth/verify-otp",
                json!({"phone": PHONE, "code": code}),
            )
            .await;
        assert_error(&got, 400, "CODE_REQUIRED", "Please provide OTP code");
    }
    let got = env
        .post("/api/auth/verify-otp", json!({"phone": PHONE}))
        .await;
    assert_error(&got, 400, "CODE_REQUIRED", "Please provide OTP code");
    let got = env.verify(PHONE, "123456").await;
    assert_error(&got, 404, "OTP_NOT_FOUND", "No OTP found for phone");
}

#[tokio::test]
async fn the_whole_flow_gives_a_jwt_with_the_spec_claims_and_logout_revokes_it() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(env.send_otp("+91-98765-43210").await.0, 202);
    let code = deliver_and_read_code(&env, PHONE).await;

    // Written another way, it is the same phone.
    let (status, body) = env.verify("+91 98765 43210", &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["verified"], true);
    assert_eq!(body["isNewUser"], true);
    assert_eq!(body["user"]["phone"], PHONE);
    let user_id = body["user"]["id"].as_str().expect("user id").to_owned();
    assert!(
        body["user"]["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let token = body["token"].as_str().expect("token").to_owned();

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["otp-gateway"]);
    let claims = jsonwebtoken::decode::<HashMap<String, Value>>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(otp_e2e::JWT_SECRET.as_bytes()),
        &validation,
    )
    .expect("token signed with JWT_SECRET, HS256")
    .claims;
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["phone"], PHONE);
    assert_eq!(claims["iss"], "otp-gateway");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64(), Some(iat + 900));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // The code verified once.
    let got = env.verify(PHONE, &code).await;
    assert_error(&got, 404, "OTP_NOT_FOUND", "No OTP found for phone");

    let (status, me) = env.get("/api/auth/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["id"], user_id.as_str());
    assert_eq!(me["user"]["phone"], PHONE);

    assert_eq!(env.logout(&token).await, 204);
    let got = env.get("/api/auth/me", Some(&token)).await;
    assert_error(&got, 401, "UNAUTHORIZED", "Invalid or expired token");

    // A second login is the same user, no longer new.
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let worker = env.start_worker().await;
    let messages = env.wait_for_messages(PHONE, 2).await;
    worker.stop().await;
    let (status, body) = env.verify(PHONE, &messages[1].code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["isNewUser"], false);
    assert_eq!(body["user"]["id"], user_id.as_str());
}

#[tokio::test]
async fn me_refuses_missing_malformed_and_foreign_tokens() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let unauthorized = |got: (u16, Value)| {
        assert_error(&got, 401, "UNAUTHORIZED", "Invalid or expired token");
    };
    unauthorized(env.get("/api/auth/me", None).await);
    unauthorized(env.get("/api/auth/me", Some("not-a-jwt")).await);
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "phone": PHONE, "iat": 1, "exp": 4_000_000_000u64, "jti": "j", "iss": "otp-gateway"}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .expect("sign");
    unauthorized(env.get("/api/auth/me", Some(&foreign)).await);
}

#[tokio::test]
async fn wrong_codes_count_down_then_lock_the_code() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let code = deliver_and_read_code(&env, PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for (remaining, message) in [
        (2, "Invalid OTP. 2 attempts remaining"),
        (1, "Invalid OTP. 1 attempt remaining"),
        (0, "Invalid OTP. 0 attempts remaining"),
    ] {
        let (status, body) = env.verify(PHONE, wrong).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(
            body,
            json!({"status": "error", "code": "OTP_INVALID", "message": message, "attemptsRemaining": remaining})
        );
    }
    let got = env.verify(PHONE, &code).await;
    assert_error(&got, 429, "TOO_MANY_ATTEMPTS", "Too many failed attempts");
    let got = env.verify(PHONE, wrong).await;
    assert_error(&got, 429, "TOO_MANY_ATTEMPTS", "Too many failed attempts");
}

#[tokio::test]
async fn concurrent_right_guesses_verify_exactly_once() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let code = deliver_and_read_code(&env, PHONE).await;
    let attempts = (0..30).map(|_| env.verify(PHONE, &code));
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let not_found = results.iter().filter(|(s, _)| *s == 404).count();
    assert_eq!((ok, not_found), (1, 29), "{results:?}");
}

#[tokio::test]
async fn concurrent_wrong_guesses_cannot_pass_the_cap() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let code = deliver_and_read_code(&env, PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let guesses = (0..40).map(|_| env.verify(PHONE, wrong));
    let results = futures_util::future::join_all(guesses).await;
    let invalid = results.iter().filter(|(s, _)| *s == 401).count();
    let locked = results.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((invalid, locked), (3, 37), "{results:?}");
    let got = env.verify(PHONE, &code).await;
    assert_error(&got, 429, "TOO_MANY_ATTEMPTS", "Too many failed attempts");
}

#[tokio::test]
async fn an_expired_code_answers_410() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.common.otp_ttl = std::time::Duration::from_secs(1);
    // The poll below guesses wrong until the code expires; let it guess enough.
    config.otp_max_attempts = 100_000;
    let _api = env.start_api_with(config).await;
    let (status, body) = env.send_otp(PHONE).await;
    assert_eq!(status, 202);
    assert_eq!(body["expiresInSeconds"], 1);
    assert_eq!(body["expiresIn"], "1 second");
    eventually("the code to expire", DEADLINE, || async {
        let got = env.verify(PHONE, "123456").await;
        (got.0 != 401).then_some(got)
    })
    .await;
    let got = env.verify(PHONE, "123456").await;
    assert_error(&got, 410, "OTP_EXPIRED", "OTP has expired");
}

#[tokio::test]
async fn asking_again_re_sends_the_same_code() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let worker = env.start_worker().await;
    let (_, first) = env.send_otp(PHONE).await;
    let (status, second) = env.send_otp("+919876543210").await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(first["requestId"], second["requestId"]);
    let messages = env.wait_for_messages(PHONE, 2).await;
    worker.stop().await;
    assert_eq!(messages[0].code, messages[1].code);
}

#[tokio::test]
async fn the_resend_cooldown_answers_429_with_retry_after() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = std::time::Duration::from_secs(30);
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let response = env
        .http
        .post(format!("{}/api/auth/send-otp", env.api_url))
        .json(&json!({"phone": PHONE}))
        .send()
        .await
        .expect("api reachable");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "RATE_LIMITED");
    assert_eq!(body["retryAfterSeconds"], retry_after);
}

#[tokio::test]
async fn a_job_that_cannot_be_queued_answers_503_and_leaves_nothing_behind() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    // With the send queue gone, the broker cannot route the job: the publish is refused.
    let channel = env.channel().await;
    channel
        .queue_delete(env.queues().send.as_str().into(), Default::default())
        .await
        .expect("delete the send queue");
    let got = env.send_otp(PHONE).await;
    assert_error(&got, 503, "UNAVAILABLE", "Failed to send OTP");
    assert_eq!(env.redis_keys().await, Vec::<String>::new());
    let got = env.verify(PHONE, "123456").await;
    assert_error(&got, 404, "OTP_NOT_FOUND", "No OTP found for phone");
}

#[tokio::test]
async fn unknown_status_ids_are_404() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let got = env.get(&format!("/api/auth/otp-status/{id}"), None).await;
        assert_error(
            &got,
            404,
            "REQUEST_NOT_FOUND",
            "No OTP request with this id",
        );
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_with_the_error_body() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let url = |path: &str| format!("{}{path}", env.api_url);
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("json error body");
        assert_eq!(body["status"], "error");
        assert_eq!(body["code"], code);
    };
    let send = url("/api/auth/send-otp");
    check(
        env.http
            .post(&send)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("reachable"),
        400,
        "INVALID_REQUEST",
    )
    .await;
    check(
        env.http
            .post(&send)
            .header("content-type", "text/plain")
            .body(r#"{"phone":"1"}"#)
            .send()
            .await
            .expect("reachable"),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let huge = json!({"phone": "9".repeat(100_000)});
    check(
        env.http
            .post(&send)
            .json(&huge)
            .send()
            .await
            .expect("reachable"),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    check(
        env.http.get(url("/nope")).send().await.expect("reachable"),
        404,
        "NOT_FOUND",
    )
    .await;
    check(
        env.http.get(&send).send().await.expect("reachable"),
        405,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    // Only a JSON object is a request: serde alone would read `["919876543210"]` as
    // `{"phone": "919876543210"}`.
    for path in [
        "/api/auth/send-otp",
        "/api/auth/verify-otp",
        "/api/auth/refresh",
    ] {
        for body in [
            json!(["919876543210"]),
            json!(["919876543210", "123456"]),
            json!("919876543210"),
            json!(919876543210u64),
            json!(null),
        ] {
            check(
                env.http
                    .post(url(path))
                    .json(&body)
                    .send()
                    .await
                    .expect("reachable"),
                400,
                "INVALID_REQUEST",
            )
            .await;
        }
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(
        env.get("/healthz", None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        env.get("/readyz", None).await,
        (
            200,
            json!({"status": "ready", "redis": "up", "rabbitmq": "up", "postgres": "up"})
        )
    );
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_short_and_plain() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let echoed = |sent: String| {
        let request = env
            .http
            .get(format!("{}/healthz", env.api_url))
            .header("x-request-id", sent);
        async move {
            let response = request.send().await.expect("reachable");
            response
                .headers()
                .get("x-request-id")
                .expect("every answer has a request id")
                .to_str()
                .expect("text")
                .to_owned()
        }
    };
    for kept in ["abc-123_X.y", &"a".repeat(64)] {
        assert_eq!(echoed(kept.to_owned()).await, kept);
    }
    for replaced in [
        "a".repeat(65),
        "x".repeat(8 * 1024),
        "a b".to_owned(),
        "<script>".to_owned(),
        "id;rm".to_owned(),
    ] {
        let got = echoed(replaced.clone()).await;
        assert_ne!(got, replaced);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "a new id: {got}");
    }
}
