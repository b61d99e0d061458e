//! The human-check stand-ins over HTTP: Turnstile's and hCaptcha's siteverify, the tokens
//! the widget stub gets from `POST /sandbox/captcha/solve`, scripted outages, and the stub
//! itself. The expected codes are the providers' documented ones (`captcha.rs` cites the
//! pages), written out here rather than taken from the crate.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{
    CaptchaOutcome, CaptchaProvider, DEFAULT_HCAPTCHA_SECRET, DEFAULT_HCAPTCHA_SITE_KEY,
    DEFAULT_TURNSTILE_SECRET, DEFAULT_TURNSTILE_SITE_KEY, ScriptedCaptcha,
};

mod common;

use common::{Served, form};

const BOTH: [CaptchaProvider; 2] = [CaptchaProvider::Turnstile, CaptchaProvider::Hcaptcha];

/// What siteverify answered.
struct Verdict {
    status: StatusCode,
    /// `None` when the body is not JSON (an outage's page).
    body: Option<Value>,
}

impl Verdict {
    fn passed(&self) -> bool {
        self.status == StatusCode::OK && self.body.as_ref().is_some_and(|b| b["success"] == true)
    }

    /// The `error-codes` of a refusal answered 200.
    fn refused_with(&self) -> Vec<String> {
        assert_eq!(self.status, StatusCode::OK, "a verdict is answered 200");
        let body = self.body.as_ref().expect("a JSON verdict");
        assert_eq!(body["success"], false, "{body}");
        body["error-codes"]
            .as_array()
            .expect("error-codes")
            .iter()
            .map(|c| c.as_str().expect("a code").to_owned())
            .collect()
    }
}

fn secret(provider: CaptchaProvider) -> &'static str {
    match provider {
        CaptchaProvider::Turnstile => DEFAULT_TURNSTILE_SECRET,
        CaptchaProvider::Hcaptcha => DEFAULT_HCAPTCHA_SECRET,
    }
}

fn siteverify_path(provider: CaptchaProvider) -> &'static str {
    match provider {
        CaptchaProvider::Turnstile => "/turnstile/v0/siteverify",
        CaptchaProvider::Hcaptcha => "/hcaptcha/siteverify",
    }
}

impl Served {
    async fn solve(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/sandbox/captcha/solve", self.root))
            .header("origin", "http://login.example.test:8080")
            .json(&body)
            .send()
            .await
            .expect("the sandbox answers")
    }

    /// A token, solved as the widget stub solves it.
    async fn token(&self, provider: CaptchaProvider) -> String {
        let response = self.solve(json!({"provider": provider})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("JSON");
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn siteverify(&self, provider: CaptchaProvider, params: &[(&str, &str)]) -> Verdict {
        let response = self
            .http
            .post(format!("{}{}", self.root, siteverify_path(provider)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params))
            .send()
            .await
            .expect("the sandbox answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        Verdict {
            status,
            body: serde_json::from_str(&text).ok(),
        }
    }

    /// Redeems `token` with the sandbox's secret, as the api does.
    async fn redeem(&self, provider: CaptchaProvider, token: &str) -> Verdict {
        self.siteverify(
            provider,
            &[
                ("secret", secret(provider)),
                ("response", token),
                ("remoteip", "203.0.113.7"),
            ],
        )
        .await
    }
}

async fn serve() -> Served {
    common::serve_with(reqwest::Client::new()).await
}

#[tokio::test]
async fn a_solved_token_verifies_once_then_is_refused_as_a_duplicate() {
    let s = serve().await;
    for (provider, duplicate) in [
        (CaptchaProvider::Turnstile, "timeout-or-duplicate"),
        (CaptchaProvider::Hcaptcha, "already-seen-response"),
    ] {
        let token = s.token(provider).await;
        let first = s.redeem(provider, &token).await;
        assert!(first.passed(), "{provider:?}: {:?}", first.body);
        let body = first.body.expect("JSON");
        assert_eq!(body["hostname"], "login.example.test", "the page's host");
        assert!(
            body["challenge_ts"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{body}"
        );
        let again = s.redeem(provider, &token).await;
        assert_eq!(again.refused_with(), [duplicate], "{provider:?}");
    }
    let log = s.sandbox.captcha_verifications();
    let outcomes: Vec<_> = log.iter().map(|v| (v.provider, v.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (CaptchaProvider::Turnstile, CaptchaOutcome::Passed),
            (CaptchaProvider::Turnstile, CaptchaOutcome::Refused),
            (CaptchaProvider::Hcaptcha, CaptchaOutcome::Passed),
            (CaptchaProvider::Hcaptcha, CaptchaOutcome::Refused),
        ]
    );
    assert_eq!(log[0].remoteip.as_deref(), Some("203.0.113.7"));
    let listed: Value = s.get_json("/sandbox/captcha/verifications").await;
    assert_eq!(
        listed["verifications"][3]["errorCodes"],
        json!(["already-seen-response"])
    );
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_and_leaves_the_token_good() {
    let s = serve().await;
    for provider in BOTH {
        let token = s.token(provider).await;
        let wrong = s
            .siteverify(provider, &[("secret", "0xnot-ours"), ("response", &token)])
            .await;
        assert_eq!(wrong.refused_with(), ["invalid-input-secret"]);
        let none = s.siteverify(provider, &[("response", &token)]).await;
        assert_eq!(none.refused_with(), ["missing-input-secret"]);
        assert!(s.redeem(provider, &token).await.passed(), "{provider:?}");
    }
}

#[tokio::test]
async fn a_missing_or_unknown_response_is_refused() {
    let s = serve().await;
    for provider in BOTH {
        let missing = s
            .siteverify(provider, &[("secret", secret(provider))])
            .await;
        assert_eq!(missing.refused_with(), ["missing-input-response"]);
        let empty = s.redeem(provider, "").await;
        assert_eq!(empty.refused_with(), ["missing-input-response"]);
        let forged = s.redeem(provider, "XXXX.DUMMY.TOKEN.XXXX").await;
        assert_eq!(forged.refused_with(), ["invalid-input-response"]);
    }
    // A Turnstile token is no hCaptcha token.
    let turnstile = s.token(CaptchaProvider::Turnstile).await;
    let crossed = s.redeem(CaptchaProvider::Hcaptcha, &turnstile).await;
    assert_eq!(crossed.refused_with(), ["invalid-input-response"]);
}

#[tokio::test]
async fn a_token_past_its_providers_life_is_refused() {
    let s = serve().await;
    for (provider, life, expired) in [
        (CaptchaProvider::Turnstile, 300, "timeout-or-duplicate"),
        (CaptchaProvider::Hcaptcha, 120, "expired-input-response"),
    ] {
        s.sandbox.reset();
        let just_in_time = s.token(provider).await;
        let late = s.token(provider).await;
        s.sandbox
            .advance_captcha_clock(Duration::from_secs(life - 1));
        assert!(
            s.redeem(provider, &just_in_time).await.passed(),
            "{provider:?}"
        );
        s.sandbox.advance_captcha_clock(Duration::from_secs(1));
        assert_eq!(s.redeem(provider, &late).await.refused_with(), [expired]);
    }
}

#[tokio::test]
async fn a_scripted_503_answers_503_then_service_is_normal_again() {
    let s = serve().await;
    let token = s.token(CaptchaProvider::Turnstile).await;
    let scripted = s
        .http
        .post(format!("{}/sandbox/captcha/script", s.root))
        .json(&json!({"answers": [{"status": 503}, {"errorCodes": ["internal-error"]}]}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(scripted.status(), StatusCode::NO_CONTENT);
    let outage = s.redeem(CaptchaProvider::Turnstile, &token).await;
    assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(outage.body.is_none(), "an outage has no verdict to read");
    let trouble = s.redeem(CaptchaProvider::Turnstile, &token).await;
    assert_eq!(trouble.refused_with(), ["internal-error"]);
    assert!(s.redeem(CaptchaProvider::Turnstile, &token).await.passed());
    let outcomes: Vec<_> = s
        .sandbox
        .captcha_verifications()
        .iter()
        .map(|v| (v.status, v.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (503, CaptchaOutcome::Failed),
            (200, CaptchaOutcome::Failed),
            (200, CaptchaOutcome::Passed),
        ]
    );
    let refused = s
        .http
        .post(format!("{}/sandbox/captcha/script", s.root))
        .json(&json!({"answers": [{"status": 99}]}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_hang_outlasts_the_callers_timeout_and_the_token_is_spent_all_the_same() {
    let s = serve().await;
    let token = s.token(CaptchaProvider::Hcaptcha).await;
    s.sandbox.script_captcha(vec![ScriptedCaptcha {
        hang_ms: Some(5_000),
        ..ScriptedCaptcha::default()
    }]);
    let impatient = s
        .http
        .post(format!("{}/hcaptcha/siteverify", s.root))
        .timeout(Duration::from_millis(200))
        .body(form(&[
            ("secret", DEFAULT_HCAPTCHA_SECRET),
            ("response", &token),
        ]))
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    let retry = s.redeem(CaptchaProvider::Hcaptcha, &token).await;
    assert_eq!(retry.refused_with(), ["already-seen-response"]);
    assert_eq!(s.sandbox.captcha_verifications()[0].hang_ms, Some(5_000));
}

#[tokio::test]
async fn turnstile_takes_json_and_replays_a_pass_for_its_idempotency_key() {
    let s = serve().await;
    let token = s.token(CaptchaProvider::Turnstile).await;
    let verify = |key: &'static str| {
        s.http
            .post(format!("{}/turnstile/v0/siteverify", s.root))
            .json(&json!({
                "secret": DEFAULT_TURNSTILE_SECRET,
                "response": token,
                "idempotency_key": key,
            }))
            .send()
    };
    let key = "5a9c1e0b-3d2f-4e6a-8b7c-9d0e1f2a3b4c";
    for attempt in 1..=2 {
        let body: Value = verify(key)
            .await
            .expect("the sandbox answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["success"], true, "attempt {attempt}: {body}");
        assert_eq!(body["error-codes"], json!([]));
    }
    let other: Value = verify("another-key")
        .await
        .expect("the sandbox answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(other["error-codes"], json!(["timeout-or-duplicate"]));
    let malformed = s
        .http
        .post(format!("{}/turnstile/v0/siteverify", s.root))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("the sandbox answers");
    let body: Value = malformed.json().await.expect("JSON");
    assert_eq!(body["error-codes"], json!(["bad-request"]));
}

#[tokio::test]
async fn hcaptcha_checks_the_site_key_it_is_given() {
    let s = serve().await;
    let token = s.token(CaptchaProvider::Hcaptcha).await;
    let mismatch = s
        .siteverify(
            CaptchaProvider::Hcaptcha,
            &[
                ("secret", DEFAULT_HCAPTCHA_SECRET),
                ("response", &token),
                ("sitekey", "20000000-ffff-ffff-ffff-000000000002"),
            ],
        )
        .await;
    assert_eq!(mismatch.refused_with(), ["sitekey-secret-mismatch"]);
    let matched = s
        .siteverify(
            CaptchaProvider::Hcaptcha,
            &[
                ("secret", DEFAULT_HCAPTCHA_SECRET),
                ("response", &token),
                ("sitekey", DEFAULT_HCAPTCHA_SITE_KEY),
            ],
        )
        .await;
    assert!(matched.passed());
}

#[tokio::test]
async fn the_widget_solves_from_another_origin_with_its_own_site_key_only() {
    let s = serve().await;
    let preflight = s
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/sandbox/captcha/solve", s.root),
        )
        .header("origin", "http://login.example.test:8080")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("the sandbox answers");
    assert!(preflight.status().is_success());
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(
        header(&preflight, "access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    let solved = s
        .solve(json!({
            "provider": "turnstile",
            "sitekey": DEFAULT_TURNSTILE_SITE_KEY,
            "action": "login",
            "cdata": "session-1",
        }))
        .await;
    assert_eq!(
        header(&solved, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let body: Value = solved.json().await.expect("JSON");
    assert_eq!(body["expiresInSeconds"], 300);
    let token = body["token"].as_str().expect("a token").to_owned();
    let verdict = s.redeem(CaptchaProvider::Turnstile, &token).await;
    let verdict = verdict.body.expect("JSON");
    assert_eq!(
        (&verdict["action"], &verdict["cdata"]),
        (&json!("login"), &json!("session-1"))
    );
    let strangers = s
        .solve(json!({"provider": "hcaptcha", "sitekey": DEFAULT_TURNSTILE_SITE_KEY}))
        .await;
    assert_eq!(strangers.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_js_is_javascript_with_both_providers_render_functions() {
    let s = serve().await;
    let response = s
        .http
        .get(format!(
            "{}/sandbox/captcha/api.js?onload=ready&render=explicit",
            s.root
        ))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    let script = response.text().await.expect("a script");
    for needed in [
        "window.turnstile",
        "window.hcaptcha",
        "render: function (container, options)",
        "I am human",
        "currentScript",
    ] {
        assert!(script.contains(needed), "api.js lacks {needed}");
    }
}

#[tokio::test]
async fn reset_forgets_tokens_scripts_and_verifications() {
    let s = serve().await;
    let token = s.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    let _ = s.redeem(CaptchaProvider::Hcaptcha, "x").await;
    s.sandbox.script_captcha(vec![ScriptedCaptcha {
        status: Some(500),
        ..ScriptedCaptcha::default()
    }]);
    s.sandbox.advance_captcha_clock(Duration::from_secs(3_600));
    assert_eq!(s.sandbox.captcha_verifications().len(), 1);
    let reset = s
        .http
        .post(format!("{}/sandbox/reset", s.root))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert!(s.sandbox.captcha_verifications().is_empty());
    let forgotten = s.redeem(CaptchaProvider::Turnstile, &token).await;
    assert_eq!(forgotten.refused_with(), ["invalid-input-response"]);
    let fresh = s.sandbox.solve_captcha(CaptchaProvider::Turnstile);
    assert!(
        s.redeem(CaptchaProvider::Turnstile, &fresh).await.passed(),
        "no script and no clock left over"
    );
}
