//! The attack stage's HTTP: send-otp and verify-otp as a chosen client address (the api
//! trusts this machine as its proxy, so `X-Forwarded-For` names the client), and the
//! human check solved at the sandbox, as a person's widget does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The api and the sandbox standing in for the human check's provider.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    api_url: String,
    sandbox_url: String,
}

/// One answer of the api.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// `Retry-After`, when the api gave one.
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The error's stable `code` (`RATE_LIMITED`, `CAPTCHA_REQUIRED`), if any.
    pub fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }

    /// A refusal that says a code is pending for the phone.
    pub fn code_pending(&self) -> bool {
        self.body["codePending"] == true
    }

    /// What kind of answer it is, to count by: `202`, `429 RATE_LIMITED`,
    /// `429 RATE_LIMITED codePending`, `403 CAPTCHA_REQUIRED`.
    pub fn kind(&self) -> String {
        let mut kind = self.status.to_string();
        if let Some(code) = self.code() {
            kind = format!("{kind} {code}");
        }
        if self.code_pending() {
            kind.push_str(" codePending");
        }
        kind
    }

    /// A 202's `resendAfterSeconds`: when the phone may have another send.
    pub fn resend_after(&self) -> Duration {
        Duration::from_secs(self.body["resendAfterSeconds"].as_u64().unwrap_or(0))
    }

    /// A 202's `requestId`.
    pub fn request_id(&self) -> Option<&str> {
        self.body["requestId"].as_str()
    }
}

impl Api {
    pub fn new(api_url: &str, sandbox_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .context("an HTTP client")?,
            api_url: api_url.to_owned(),
            sandbox_url: sandbox_url.to_owned(),
        })
    }

    /// send-otp for `phone` from `client`, with a human check's token if given.
    pub async fn send_otp(
        &self,
        client: IpAddr,
        phone: &str,
        captcha_token: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut body = json!({ "phone": phone });
        if let Some(token) = captcha_token {
            body["captchaToken"] = json!(token);
        }
        self.post(client, "/api/auth/send-otp", &body).await
    }

    /// verify-otp of `code` for `phone` from `client`, bound to a send if given.
    pub async fn verify_otp(
        &self,
        client: IpAddr,
        phone: &str,
        code: &str,
        request_id: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let body = json!({ "phone": phone, "code": code, "requestId": request_id });
        self.post(client, "/api/auth/verify-otp", &body).await
    }

    async fn post(&self, client: IpAddr, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let answer = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("x-forwarded-for", client.to_string())
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = answer.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// A Turnstile token from the sandbox, as its widget gets one for a person.
    pub async fn solve_check(&self) -> anyhow::Result<String> {
        let url = format!("{}/sandbox/captcha/solve", self.sandbox_url);
        let answer: Value = self
            .http
            .post(&url)
            .json(&json!({ "provider": "turnstile" }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("POST {url}"))?
            .json()
            .await
            .with_context(|| format!("the answer of {url}"))?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {answer}"))
    }
}

/// Answers counted by kind.
pub type Tally = BTreeMap<String, u64>;

pub fn count(tally: &mut Tally, kind: impl Into<String>) {
    *tally.entry(kind.into()).or_default() += 1;
}

/// Adds `from`'s counts to `into`'s.
pub fn merge(into: &mut Tally, from: Tally) {
    for (kind, n) in from {
        *into.entry(kind).or_default() += n;
    }
}
