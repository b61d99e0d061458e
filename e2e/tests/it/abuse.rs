//! Abuse protection: every rate limit holds across two api instances on one Redis,
//! forwarded addresses count only when trusted, and tampered tokens are refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::Duration;

use otp_e2e::TestEnv;
use serde_json::{Value, json};

const PHONE: &str = "919876543210";

fn phone(n: u32) -> String {
    format!("9198765432{n:02}")
}

fn assert_rate_limited(got: &(u16, Value)) -> u64 {
    assert_eq!(got.0, 429, "{}", got.1);
    assert_eq!(got.1["code"], "RATE_LIMITED");
    assert_eq!(got.1["status"], "error");
    got.1["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds")
}

#[tokio::test]
async fn the_resend_cooldown_holds_across_two_api_instances() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = std::time::Duration::from_secs(30);
    let (_a, a) = env.spawn_api(config.clone()).await;
    let (_b, b) = env.spawn_api(config).await;
    assert_eq!(
        env.post_to(&a, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await
            .0,
        202
    );
    let wait = assert_rate_limited(
        &env.post_to(&b, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await,
    );
    assert!((29..=30).contains(&wait), "{wait}");
}

#[tokio::test]
async fn sends_per_minute_hold_over_all_phones_across_two_api_instances_with_room_for_re_sends() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.sends_per_minute = 10;
    config.limits.resend_cooldown = std::time::Duration::from_secs(0);
    config.limits.ip_requests_per_minute = 0;
    let (_a, a) = env.spawn_api(config.clone()).await;
    let (_b, b) = env.spawn_api(config).await;
    let send = |url: &str, n: u32| {
        let url = url.to_owned();
        let env = &env;
        async move {
            env.post_to(&url, "/api/auth/send-otp", json!({"phone": phone(n)}))
                .await
        }
    };
    // New codes take nine of the ten, whichever replica takes them.
    for n in 0..9 {
        let url = if n % 2 == 0 { &a } else { &b };
        assert_eq!(send(url, n).await.0, 202, "send {n}");
    }
    let wait = assert_rate_limited(&send(&a, 9).await);
    assert!((1..=60).contains(&wait), "{wait}");
    assert_rate_limited(&send(&b, 10).await);
    // The tenth is a re-send's: a user whose code has not come asks again.
    assert_eq!(send(&b, 0).await.0, 202);
    assert_rate_limited(&send(&a, 1).await);
    // A refused send left nothing behind: no code to verify.
    assert_eq!(
        env.post_to(
            &a,
            "/api/auth/verify-otp",
            json!({"phone": phone(9), "code": "123456"})
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn codes_go_only_to_the_allowed_countries() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.allowed_countries = "91,44".parse().expect("calling codes");
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp("+91 98765 43210").await.0, 202);
    assert_eq!(env.send_otp("+44 7911 123456").await.0, 202);
    let (status, body) = env
        .post("/api/auth/send-otp", json!({"phone": "+1 415 555 2671"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "PHONE_NOT_ALLOWED");
    assert_eq!(body["message"], "Sending to this country is not enabled");
}

#[tokio::test]
async fn premium_toll_free_and_satellite_numbers_get_no_code_by_default() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    for number in [
        "+1 900 555 0123",  // US premium rate
        "+44 909 879 0000", // UK premium rate
        "+1 800 555 0123",  // toll-free
        "+870 301234567",   // Inmarsat
        "+881 612345678",   // Global Mobile Satellite System
        "+800 12345678",    // international freephone
    ] {
        let (status, body) = env.send_otp(number).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("PHONE_NOT_ALLOWED")),
            "{number}: {body}"
        );
    }
    assert_eq!(
        env.send_otp("+1 415 555 2671").await.0,
        202,
        "fixed line or mobile"
    );
    assert_eq!(env.send_otp("+44 7911 123456").await.0, 202, "mobile");
    // An operator who wants them says so.
    let mut all = TestEnv::new().await;
    let _api = all
        .start_api_with(all.api_config_with(&["--allowed-number-types", "all"]))
        .await;
    assert_eq!(all.send_otp("+1 900 555 0123").await.0, 202);
}

#[tokio::test]
async fn each_country_has_its_own_minute_budget_across_two_api_instances() {
    let env = TestEnv::new().await;
    let config = env.api_config_with(&["--country-sends-per-minute", "44=3,*=2"]);
    let (_a, a) = env.spawn_api(config.clone()).await;
    let (_b, b) = env.spawn_api(config).await;
    let send = |url: &String, phone: String| {
        let env = &env;
        let url = url.clone();
        async move {
            env.post_to(&url, "/api/auth/send-otp", json!({"phone": phone}))
                .await
        }
    };
    // New codes take nine tenths of a budget (rounded down, so 3 → 3, 2 → 2).
    for (n, url) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(send(url, format!("44791112345{n}")).await.0, 202);
    }
    let (status, body) = send(&b, "447911123459".into()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    // Another country is counted on its own: two, then refused.
    for (n, url) in [&b, &a].into_iter().enumerate() {
        assert_eq!(send(url, format!("91987654321{n}")).await.0, 202);
    }
    assert_eq!(send(&b, "919876543219".into()).await.0, 429);
    // And a third country on its own again.
    assert_eq!(send(&a, "14155552671".into()).await.0, 202);
}

#[tokio::test]
async fn sends_per_phone_per_hour_hold_across_two_api_instances() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.phone_sends_per_hour = 3;
    config.limits.max_sends_per_code = 100;
    let (_a, a) = env.spawn_api(config.clone()).await;
    let (_b, b) = env.spawn_api(config).await;
    for url in [&a, &b, &a] {
        assert_eq!(
            env.post_to(url, "/api/auth/send-otp", json!({"phone": PHONE}))
                .await
                .0,
            202
        );
    }
    let wait = assert_rate_limited(
        &env.post_to(&b, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await,
    );
    assert!((3590..=3600).contains(&wait), "{wait}");
    // Another phone is not affected.
    assert_eq!(
        env.post_to(&a, "/api/auth/send-otp", json!({"phone": phone(1)}))
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn re_sends_of_one_code_are_capped_and_carry_the_same_code() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.max_sends_per_code = 2;
    let (_a, a) = env.spawn_api(config.clone()).await;
    let _b = env.start_api_with(config).await;
    let b = env.api_url.clone();
    let _worker = env.start_worker().await;
    assert_eq!(
        env.post_to(&a, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await
            .0,
        202
    );
    assert_eq!(
        env.post_to(&b, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await
            .0,
        202
    );
    let wait = assert_rate_limited(
        &env.post_to(&a, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await,
    );
    assert!(
        (290..=300).contains(&wait),
        "until the code expires: {wait}"
    );
    let messages = env.wait_for_messages(PHONE, 2).await;
    assert_eq!(messages[0].code, messages[1].code);
    // Verified, the code is gone, and a new send mints a new one.
    assert_eq!(env.verify(PHONE, &messages[0].code).await.0, 200);
    assert_eq!(
        env.post_to(&a, "/api/auth/send-otp", json!({"phone": PHONE}))
            .await
            .0,
        202
    );
    let messages = env.wait_for_messages(PHONE, 3).await;
    assert_eq!(env.verify(PHONE, &messages[0].code).await.0, 401);
}

#[tokio::test]
async fn requests_per_client_address_hold_across_two_api_instances_for_send_and_verify() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.ip_requests_per_minute = 5;
    let (_a, a) = env.spawn_api(config.clone()).await;
    let (_b, b) = env.spawn_api(config).await;
    for n in 0..3 {
        assert_eq!(
            env.post_to(&a, "/api/auth/send-otp", json!({"phone": phone(n)}))
                .await
                .0,
            202
        );
    }
    for n in 0..2 {
        let (status, _) = env
            .post_to(
                &b,
                "/api/auth/verify-otp",
                json!({"phone": phone(n), "code": "000000"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let wait = assert_rate_limited(
        &env.post_to(&b, "/api/auth/send-otp", json!({"phone": phone(9)}))
            .await,
    );
    assert!((1..=60).contains(&wait), "{wait}");
    assert_rate_limited(
        &env.post_to(
            &a,
            "/api/auth/verify-otp",
            json!({"phone": phone(0), "code": "1"}),
        )
        .await,
    );
    // Bad requests count too: a flood of garbage is no way around the limit.
    let (status, _) = env.post_to(&a, "/api/auth/send-otp", json!({})).await;
    assert_eq!(status, 429);
}

async fn send_from(env: &TestEnv, forwarded_for: &str, n: u32) -> u16 {
    env.http
        .post(format!("{}/api/auth/send-otp", env.api_url))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"phone": phone(n)}))
        .send()
        .await
        .expect("api reachable")
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.ip_requests_per_minute = 2;
    // Another network is trusted, not the one the test's requests come from.
    config.limits.trusted_proxies = "10.0.0.0/8".parse().expect("networks");
    let _untrusting = env.start_api_with(config.clone()).await;
    // Not from a trusted proxy: a client cannot dodge the limit by inventing addresses.
    assert_eq!(send_from(&env, "203.0.113.1", 0).await, 202);
    assert_eq!(send_from(&env, "203.0.113.2", 1).await, 202);
    assert_eq!(send_from(&env, "203.0.113.3", 2).await, 429);

    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.ip_requests_per_minute = 2;
    config.limits.trusted_proxies = "127.0.0.0/8".parse().expect("networks");
    let _trusting = env.start_api_with(config).await;
    // From a trusted proxy: the right-most entry that is not a proxy is the client,
    // whatever a client forged to the left of it.
    assert_eq!(send_from(&env, "198.51.100.7, 203.0.113.1", 0).await, 202);
    assert_eq!(send_from(&env, "198.51.100.8, 203.0.113.1", 1).await, 202);
    assert_eq!(send_from(&env, "198.51.100.9, 203.0.113.1", 2).await, 429);
    // A second trusted hop is skipped.
    assert_eq!(send_from(&env, "203.0.113.1, 127.0.0.5", 3).await, 429);
    assert_eq!(send_from(&env, "203.0.113.2", 4).await, 202);
    // IPv6 clients count per /64: new addresses in one /64 share its budget.
    assert_eq!(send_from(&env, "2001:db8:1:2::1", 5).await, 202);
    assert_eq!(send_from(&env, "2001:db8:1:2::2", 6).await, 202);
    assert_eq!(send_from(&env, "2001:db8:1:2:ffff::3", 7).await, 429);
    assert_eq!(send_from(&env, "2001:db8:1:3::1", 8).await, 202);
}

#[tokio::test]
async fn many_addresses_of_one_network_share_its_budget() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.ip_requests_per_minute = 10;
    config.limits.ip_network_requests_per_minute = 4;
    config.limits.trusted_proxies = "127.0.0.0/8".parse().expect("networks");
    let _api = env.start_api_with(config).await;
    // Four addresses of one IPv4 /24, a request each: the network's budget. Before,
    // each new address had a whole budget of its own.
    for (n, address) in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(send_from(&env, address, n as u32).await, 202, "{address}");
    }
    assert_eq!(
        send_from(&env, "203.0.113.99", 4).await,
        429,
        "a fifth address"
    );
    assert_eq!(
        send_from(&env, "198.51.100.1", 5).await,
        202,
        "another network"
    );
    // IPv6: /64s of one /48 share the /48's budget.
    for (n, address) in [
        "2001:db8:1:1::1",
        "2001:db8:1:2::1",
        "2001:db8:1:3::1",
        "2001:db8:1:4::1",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            send_from(&env, address, 10 + n as u32).await,
            202,
            "{address}"
        );
    }
    assert_eq!(
        send_from(&env, "2001:db8:1:ffff::1", 20).await,
        429,
        "a fifth /64"
    );
    assert_eq!(
        send_from(&env, "2001:db8:2::1", 21).await,
        202,
        "another /48"
    );
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_refused() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    let (_, body) = env.verify(PHONE, &code).await;
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(env.get("/api/auth/me", Some(&token)).await.0, 200);

    let segments: Vec<&str> = token.split('.').collect();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).expect("base64"))
            .expect("json");

    // The payload changed (another phone), the signature kept.
    let mut forged = payload.clone();
    forged["phone"] = json!("14155552671");
    let tampered = format!(
        "{}.{}.{}",
        segments[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json")),
        segments[2]
    );
    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", segments[1]);
    // The right key, the same live session, but expired.
    let mut old = payload.clone();
    old["iat"] = json!(1);
    old["exp"] = json!(2);
    let expired = sign(&old, otp_e2e::JWT_SECRET.as_bytes());
    // Another key.
    let foreign = sign(&payload, b"another-key-another-key-another-key!");
    // Another issuer, right key.
    let mut elsewhere = payload.clone();
    elsewhere["iss"] = json!("someone-else");
    let other_issuer = sign(&elsewhere, otp_e2e::JWT_SECRET.as_bytes());

    for (what, bad) in [
        ("tampered", tampered),
        ("alg none", unsigned),
        ("expired", expired),
        ("other key", foreign),
        ("other issuer", other_issuer),
    ] {
        let (status, body) = env.get("/api/auth/me", Some(&bad)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], "UNAUTHORIZED", "{what}");
    }
    // The genuine token still works: the refusals were about the tokens.
    assert_eq!(env.get("/api/auth/me", Some(&token)).await.0, 200);
}

#[tokio::test]
async fn a_send_refused_while_a_code_is_pending_says_so_so_the_user_can_enter_it() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = Duration::from_secs(30);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    // Within the cooldown, a code is pending: the app can offer to enter it (a stranger
    // who asked for it cannot keep the owner from the code it brought).
    let (status, body) = env.send_otp(PHONE).await;
    assert_eq!(
        (status, body["codePending"].as_bool()),
        (429, Some(true)),
        "{body}"
    );
    // Once it is spent by a login, a refusal (the cooldown still runs) says nothing is
    // pending.
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    assert_eq!(env.verify(PHONE, &code).await.0, 200);
    let (status, body) = env.send_otp(PHONE).await;
    assert_eq!((status, body.get("codePending")), (429, None), "{body}");
}
