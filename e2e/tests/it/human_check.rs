//! Keeping a stranger from keeping the owner out (issue 24, items 1 and 4): a phone's
//! sends that no login followed slow down, never past the code just sent; with a human
//! check on (`CAPTCHA_PROVIDER`, the sandbox standing in for the provider's siteverify),
//! a phone's sends past `CAPTCHA_AFTER_SENDS` and new codes past `CAPTCHA_BUDGET_PERCENT`
//! of a send budget need a check instead of being refused, a token is good once, and
//! the provider's outage is a 503.

use std::time::Duration;

use otp_api::config::ApiConfig;
use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::{Value, json};
use wati_sandbox::{
    CaptchaOutcome, CaptchaProvider, DEFAULT_TURNSTILE_SECRET, DEFAULT_TURNSTILE_SITE_KEY,
    ScriptedCaptcha,
};

const PHONE: &str = "919876543210";

/// The api's settings with Turnstile's check on, the sandbox standing in for it, and
/// `extra` flags.
fn with_check(env: &TestEnv, extra: &[&str]) -> ApiConfig {
    with_check_secret(env, DEFAULT_TURNSTILE_SECRET, extra)
}

/// [`with_check`] with the api holding `secret`.
fn with_check_secret(env: &TestEnv, secret: &str, extra: &[&str]) -> ApiConfig {
    let verify_url = format!("{}/turnstile/v0/siteverify", env.sandbox_url);
    let mut args = vec![
        "--captcha-provider",
        "turnstile",
        "--captcha-site-key",
        DEFAULT_TURNSTILE_SITE_KEY,
        "--captcha-secret",
        secret,
        "--captcha-verify-url",
        &verify_url,
    ];
    args.extend_from_slice(extra);
    env.api_config_with(&args)
}

/// send-otp for `phone` with a human check's token.
async fn send_checked(env: &TestEnv, phone: &str, token: &str) -> (u16, Value) {
    env.post(
        "/api/auth/send-otp",
        json!({"phone": phone, "captchaToken": token}),
    )
    .await
}

fn assert_check_required(status: u16, body: &Value) {
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("CAPTCHA_REQUIRED")),
        "{body}"
    );
    assert_eq!(
        body["captcha"],
        json!({"provider": "turnstile", "siteKey": DEFAULT_TURNSTILE_SITE_KEY}),
        "what the page's widget needs: {body}"
    );
}

/// Sends to `phone` until one is accepted (the cooldown over); its answer.
async fn accepted_once_free(env: &TestEnv, phone: &str) -> Value {
    eventually("the cooldown to end", DEADLINE, || async {
        let (status, body) = env.send_otp(phone).await;
        (status == 202).then_some(body)
    })
    .await
}

fn resend_after(body: &Value) -> u64 {
    body["resendAfterSeconds"]
        .as_u64()
        .expect("resendAfterSeconds")
}

#[tokio::test]
async fn unverified_sends_slow_down_never_past_the_code_and_a_login_starts_over() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = Duration::from_secs(1);
    config.common.otp_ttl = Duration::from_secs(6);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;

    let (status, first) = env.send_otp(PHONE).await;
    assert_eq!((status, resend_after(&first)), (202, 1), "{first}");
    let (status, refused) = env.send_otp(PHONE).await;
    assert_eq!((status, &refused["codePending"]), (429, &Value::Bool(true)));
    let second = accepted_once_free(&env, PHONE).await;
    assert_eq!(resend_after(&second), 2, "doubled: {second}");
    let third = accepted_once_free(&env, PHONE).await;
    // Four seconds by doubling, but the code lives less: whoever the cooldown holds
    // back has that code to enter.
    let left = third["expiresInSeconds"]
        .as_u64()
        .expect("expiresInSeconds");
    assert!(resend_after(&third) <= left && left < 4, "{third}");

    let code = env.wait_for_messages(PHONE, 3).await[2].code.clone();
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!(status, 200, "{body}");
    let after_login = accepted_once_free(&env, PHONE).await;
    assert_eq!(
        resend_after(&after_login),
        1,
        "a login forgets the sends: {after_login}"
    );
}

#[tokio::test]
async fn the_hours_last_send_keeps_its_code_until_the_phone_may_have_another() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.limits.resend_cooldown = Duration::from_secs(1);
    config.limits.phone_sends_per_hour = 2;
    config.common.otp_ttl = Duration::from_secs(6);
    let _api = env.start_api_with(config).await;

    let (status, first) = env.send_otp(PHONE).await;
    let first_life = first["expiresInSeconds"]
        .as_u64()
        .expect("expiresInSeconds");
    assert_eq!((status, first_life), (202, 6), "{first}");
    let last = accepted_once_free(&env, PHONE).await;
    let life = last["expiresInSeconds"].as_u64().expect("expiresInSeconds");
    // The hour's window reopens an hour after the first send: the code lives till then.
    assert!((3_590..=3_600).contains(&life), "{last}");

    let (status, refused) = env.send_otp(PHONE).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["codePending"], Value::Bool(true), "{refused}");
    let wait = refused["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!(wait <= life, "the code outlasts the wait: {refused}");
}

#[tokio::test]
async fn past_the_free_sends_a_phone_needs_the_human_check_and_a_person_gets_through() {
    let mut env = TestEnv::new().await;
    // One free send, then a check for each, up to the hour's cap of three.
    let config = with_check(
        &env,
        &["--captcha-after-sends", "1", "--phone-sends-per-hour", "3"],
    );
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);
    let (status, body) = env.send_otp(PHONE).await;
    assert_check_required(status, &body);
    assert_eq!(body["codePending"], Value::Bool(true), "{body}");
    assert!(
        env.sandbox.captcha_verifications().is_empty(),
        "no token, no call"
    );

    for _ in 0..2 {
        let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
        let (status, body) = send_checked(&env, PHONE, &token).await;
        assert_eq!(status, 202, "a person gets through: {body}");
    }
    let verified = env.sandbox.captcha_verifications();
    assert_eq!(verified.len(), 2);
    assert!(
        verified
            .iter()
            .all(|v| v.outcome == CaptchaOutcome::Passed
                && v.remoteip.as_deref() == Some("127.0.0.1")),
        "{verified:?}"
    );
    // The hour's cap holds for people too (paid solvers are people): the last send's
    // code stays pending meanwhile.
    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    let (status, body) = send_checked(&env, PHONE, &token).await;
    assert_eq!(
        (status, body["code"].as_str(), &body["codePending"]),
        (429, Some("RATE_LIMITED"), &Value::Bool(true)),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_is_good_once_and_a_made_up_one_is_refused() {
    let mut env = TestEnv::new().await;
    let config = with_check(&env, &["--captcha-after-sends", "1"]);
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);

    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    assert_eq!(send_checked(&env, PHONE, &token).await.0, 202);
    for refused in [token.as_str(), "made-up-token"] {
        let (status, body) = send_checked(&env, PHONE, refused).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("CAPTCHA_INVALID")),
            "{refused}: {body}"
        );
    }
}

#[tokio::test]
async fn the_check_providers_outage_is_a_503_with_retry_after() {
    let mut env = TestEnv::new().await;
    let config = with_check(&env, &["--captcha-after-sends", "1"]);
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);

    env.sandbox.script_captcha(vec![
        ScriptedCaptcha {
            status: Some(503),
            ..ScriptedCaptcha::default()
        },
        ScriptedCaptcha {
            error_codes: Some(vec!["internal-error".into()]),
            ..ScriptedCaptcha::default()
        },
    ]);
    for _ in 0..2 {
        let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
        let response = env
            .http
            .post(format!("{}/api/auth/send-otp", env.api_url))
            .json(&json!({"phone": PHONE, "captchaToken": token}))
            .send()
            .await
            .expect("send-otp answers");
        assert_eq!(response.status().as_u16(), 503);
        assert!(
            response.headers().contains_key("retry-after"),
            "{:?}",
            response.headers()
        );
    }
    // Back up: the same person's next token goes through.
    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    assert_eq!(send_checked(&env, PHONE, &token).await.0, 202);
}

#[tokio::test]
async fn under_budget_pressure_new_codes_need_the_check() {
    let mut env = TestEnv::new().await;
    // Four sends a minute; half of them for new codes without a check.
    let config = with_check(
        &env,
        &["--sends-per-minute", "4", "--captcha-budget-percent", "50"],
    );
    let _api = env.start_api_with(config).await;
    let phones = [
        "919800000001",
        "919800000002",
        "919800000003",
        "919800000004",
    ];
    for phone in &phones[..2] {
        assert_eq!(env.send_otp(phone).await.0, 202);
    }
    let (status, body) = env.send_otp(phones[2]).await;
    assert_check_required(status, &body);
    // A re-send of a pending code is no new code: not asked.
    assert_eq!(env.send_otp(phones[0]).await.0, 202);
    // A person gets the rest of the minute.
    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    assert_eq!(send_checked(&env, phones[2], &token).await.0, 202);
    // The budget itself still holds, check or not.
    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    let (status, body) = send_checked(&env, phones[3], &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
}

#[tokio::test]
async fn a_secret_the_provider_refuses_is_our_500_not_the_persons_failure() {
    let mut env = TestEnv::new().await;
    let config = with_check_secret(&env, "0x4AAAAAAAnot-the-sandboxs-secret", &[]);
    let _api = env.start_api_with(config).await;
    let token = env.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    let (status, body) = send_checked(&env, PHONE, &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("INTERNAL")),
        "{body}"
    );
}

#[tokio::test]
async fn sms_codes_under_budget_pressure_need_the_check_too() {
    let mut env = TestEnv::new().await;
    let verify_url = format!("{}/turnstile/v0/siteverify", env.sandbox_url);
    // Two SMS a minute, half of them for new codes without a check.
    let _api = env
        .start_sms_api(
            "44",
            &[
                "--sms-sends-per-minute",
                "2",
                "--captcha-provider",
                "turnstile",
                "--captcha-site-key",
                DEFAULT_TURNSTILE_SITE_KEY,
                "--captcha-secret",
                DEFAULT_TURNSTILE_SECRET,
                "--captcha-verify-url",
                &verify_url,
                "--captcha-budget-percent",
                "50",
            ],
        )
        .await;
    let by_sms = |phone: &'static str| {
        env.post(
            "/api/auth/send-otp",
            json!({"phone": phone, "channel": "sms"}),
        )
    };
    assert_eq!(by_sms("447911123401").await.0, 202);
    let (status, body) = by_sms("447911123402").await;
    assert_check_required(status, &body);
}
