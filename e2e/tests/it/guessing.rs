//! Guesses bound to a send (`requestId`) and guessing across codes: a stranger's wrong
//! guesses, bound or not, never make the owner's right code fail when the owner
//! verifies with their own request id; bound guesses count per send; and a phone's
//! wrong guesses across codes are capped without locking its owner out.

use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::{Value, json};

const OWNER: &str = "919876543210";
const OTHER: &str = "14155552671";

async fn verify_bound(env: &TestEnv, phone: &str, code: &str, request_id: &str) -> (u16, Value) {
    env.post(
        "/api/auth/verify-otp",
        json!({"phone": phone, "code": code, "requestId": request_id}),
    )
    .await
}

fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| if c == '1' { '2' } else { '1' })
        .collect()
}

/// An api (with `adjust` applied to its settings) and a worker.
async fn started(
    adjust: impl FnOnce(&mut otp_api::config::ApiConfig),
) -> (TestEnv, otp_e2e::Running, otp_e2e::Running) {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = std::time::Duration::from_secs(0);
    config.limits.ip_requests_per_minute = 0;
    adjust(&mut config);
    let api = env.start_api_with(config).await;
    let worker = env.start_worker().await;
    (env, api, worker)
}

/// Sends to `phone` and waits for the code; the request id and the code.
async fn sent(env: &TestEnv, phone: &str) -> (String, String) {
    let before = env.sandbox.messages(phone).len();
    let request_id = env.send_accepted(phone).await;
    let code = env.wait_for_messages(phone, before + 1).await[before]
        .code
        .clone();
    (request_id, code)
}

#[tokio::test]
async fn a_strangers_wrong_guesses_never_fail_the_owners_right_code() {
    let (env, _api, _worker) = started(|_| {}).await;
    let (owner_request, code) = sent(&env, OWNER).await;
    let bad = wrong(&code);

    // Unbound guesses lock unbound guessing, as the seed's verify always did...
    for remaining in [2, 1, 0] {
        let (status, body) = env.verify(OWNER, &bad).await;
        assert_eq!(
            (status, &body["attemptsRemaining"]),
            (401, &json!(remaining))
        );
    }
    assert_eq!(env.verify(OWNER, &code).await.0, 429);
    // ...and guesses bound to the stranger's own send (a re-send of the same code)
    // lock only that send.
    let stranger_request = env.send_accepted(OWNER).await;
    for _ in 0..3 {
        assert_eq!(
            verify_bound(&env, OWNER, &bad, &stranger_request).await.0,
            401
        );
    }
    assert_eq!(
        verify_bound(&env, OWNER, &code, &stranger_request).await.0,
        429
    );

    // The owner, with their own request id, logs in.
    let (status, body) = verify_bound(&env, OWNER, &code, &owner_request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["phone"], OWNER);
}

#[tokio::test]
async fn bound_guesses_count_against_their_own_send_only() {
    let (env, _api, _worker) = started(|_| {}).await;
    let (first, code) = sent(&env, OWNER).await;
    let second = env.send_accepted(OWNER).await;
    let bad = wrong(&code);
    for (remaining, noun) in [(2, "attempts"), (1, "attempt"), (0, "attempts")] {
        let (status, body) = verify_bound(&env, OWNER, &bad, &first).await;
        assert_eq!(status, 401);
        assert_eq!(
            body["message"],
            format!("Invalid OTP. {remaining} {noun} remaining")
        );
    }
    let (status, body) = verify_bound(&env, OWNER, &code, &first).await;
    assert_eq!((status, &body["code"]), (429, &json!("TOO_MANY_ATTEMPTS")));
    // The other send of the same code, and unbound guessing, are untouched.
    assert_eq!(
        verify_bound(&env, OWNER, &bad, &second).await.1["attemptsRemaining"],
        2
    );
    assert_eq!(env.verify(OWNER, &bad).await.1["attemptsRemaining"], 2);
    assert_eq!(verify_bound(&env, OWNER, &code, &second).await.0, 200);
}

#[tokio::test]
async fn a_request_id_that_is_not_a_send_of_this_code_is_not_found() {
    let (env, _api, _worker) = started(|_| {}).await;
    let (_, code) = sent(&env, OWNER).await;
    let (other_request, _) = sent(&env, OTHER).await;
    for request_id in [
        uuid::Uuid::new_v4().to_string(),
        other_request,
        "not-a-request-id".to_owned(),
    ] {
        let (status, body) = verify_bound(&env, OWNER, &code, &request_id).await;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("OTP_NOT_FOUND")),
            "{request_id}"
        );
    }
    let (status, body) = env
        .post(
            "/api/auth/verify-otp",
            json!({"phone": OWNER, "code": code, "requestId": 7}),
        )
        .await;
    assert_eq!((status, &body["code"]), (400, &json!("INVALID_REQUEST")));
    // None of those spent or locked anything: the seed's unbound verify still works.
    assert_eq!(env.verify(OWNER, &code).await.0, 200);
}

#[tokio::test]
async fn past_the_cap_of_wrong_guesses_across_codes_a_phones_codes_grow_and_nobody_is_locked_out() {
    let (env, _api, _worker) = started(|config| {
        config.wrong_guesses_per_phone = 5;
        config.common.otp_ttl = std::time::Duration::from_secs(2);
        config.limits.max_sends_per_code = 10;
    })
    .await;
    let (request, code) = sent(&env, OWNER).await;
    assert_eq!(code.len(), 6);
    let bad = wrong(&code);
    // Five wrong guesses for the phone: three unbound (then unbound guessing of this
    // code is locked) and two bound.
    for _ in 0..3 {
        assert_eq!(env.verify(OWNER, &bad).await.0, 401);
    }
    for _ in 0..2 {
        assert_eq!(verify_bound(&env, OWNER, &bad, &request).await.0, 401);
    }
    // Guessing would spend it: read its expiry and Redis's clock instead.
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(OWNER).expect("a phone");
    let record = env.keys().otp(&phone);
    eventually("the code to expire", DEADLINE, || async {
        let mut redis = env.redis.clone();
        let expires_at: u64 = redis::cmd("HGET")
            .arg(&record)
            .arg(otp_shared::redis::records::code::EXPIRES_AT)
            .query_async(&mut redis)
            .await
            .expect("the code record");
        let (seconds, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut redis)
            .await
            .expect("redis time");
        (seconds * 1000 + micros / 1000 >= expires_at).then_some(())
    })
    .await;
    assert_eq!(verify_bound(&env, OWNER, &code, &request).await.0, 410);

    // The phone's next code has ten digits: each guess hits ten thousand times less
    // often. Nobody is locked out: the owner logs in, bound to their send or not.
    let (_, code) = sent(&env, OWNER).await;
    assert_eq!(code.len(), 10, "a longer code after the cap");
    assert_eq!(env.verify(OWNER, &code).await.0, 200);
    // A login does not reset the count (it would give an attacker a fresh hundred
    // guesses at short codes each time the owner logs in).
    let (request, code) = sent(&env, OWNER).await;
    assert_eq!(code.len(), 10);
    assert_eq!(verify_bound(&env, OWNER, &code, &request).await.0, 200);
}

/// Verifies `code` for `phone` unbound, from `client` (through a trusted proxy).
async fn verify_from(env: &TestEnv, client: &str, phone: &str, code: &str) -> (u16, Value) {
    let response = env
        .http
        .post(format!("{}/api/auth/verify-otp", env.api_url))
        .header("x-forwarded-for", client)
        .json(&json!({"phone": phone, "code": code}))
        .send()
        .await
        .expect("api reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_strangers_unbound_wrong_guesses_lock_the_stranger_not_the_owner() {
    let (env, _api, _worker) = started(|config| {
        config.limits.trusted_proxies = "127.0.0.0/8".parse().expect("networks");
    })
    .await;
    let (_, code) = sent(&env, OWNER).await;
    // A stranger burns its attempts without a requestId...
    for left in [2, 1, 0] {
        let (status, body) = verify_from(&env, "203.0.113.7", OWNER, &wrong(&code)).await;
        assert_eq!(
            (status, body["attemptsRemaining"].as_u64()),
            (401, Some(left))
        );
    }
    let (status, body) = verify_from(&env, "203.0.113.7", OWNER, &code).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("TOO_MANY_ATTEMPTS"))
    );
    // ...and the owner, who got the code on WhatsApp and types it in without one, logs
    // in (before, the stranger's guesses locked the code for everyone's unbound guesses).
    let (status, body) = verify_from(&env, "198.51.100.20", OWNER, &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unbound_guesses_from_many_clients_are_capped_for_the_code() {
    let (env, _api, _worker) = started(|config| {
        config.limits.trusted_proxies = "127.0.0.0/8".parse().expect("networks");
    })
    .await;
    let (_, code) = sent(&env, OWNER).await;
    // Ten clients' worth of wrong unbound guesses (three each) lock unbound guessing of
    // the code for everyone: a brute force from many addresses is bounded.
    let clients = otp_shared::redis::codes::CLIENTS_PER_CODE;
    for client in 0..clients {
        for _ in 0..3 {
            let from = format!("203.0.113.{}", client + 1);
            assert_eq!(verify_from(&env, &from, OWNER, &wrong(&code)).await.0, 401);
        }
    }
    let (status, body) = verify_from(&env, "198.51.100.20", OWNER, &code).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("TOO_MANY_ATTEMPTS"))
    );
}
