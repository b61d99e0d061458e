//! What the sandbox remembers of the human check (`captcha.rs`): the tokens it handed
//! out, the answers scripted for the next siteverify calls, every siteverify call in
//! arrival order, and its own clock, which a test can move to age tokens.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::captcha::{self, CaptchaProvider, CaptchaSite, Decision, Token, VerifyRequest};
use crate::ids;

/// An answer scripted for the next siteverify call (either provider), used once, in
/// order; after the script, calls are verified as the provider would.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedCaptcha {
    /// Answer this HTTP status (500, 502, 503, 429: the provider's outage) with a plain
    /// text body, or with `errorCodes` as JSON if given. A 2xx status changes nothing.
    /// Outside 200 to 599 it is answered 500 (`POST /sandbox/captcha/script` refuses
    /// such a status).
    #[serde(default)]
    pub status: Option<u16>,
    /// Answer `{"success":false,"error-codes":[…]}`, e.g. `["internal-error"]`, the
    /// provider's own trouble ("the request can be retried").
    #[serde(default)]
    pub error_codes: Option<Vec<String>>,
    /// Wait this long before answering: longer than the caller's timeout, a provider that
    /// hangs. A call with nothing else scripted is verified when it arrives, so its token
    /// is spent even if the caller stops waiting.
    #[serde(default)]
    pub hang_ms: Option<u64>,
}

impl ScriptedCaptcha {
    /// The failure this script answers instead of a verdict, if any.
    fn failure(&self) -> Option<(StatusCode, Option<Value>)> {
        let status = self.status.map(|s| {
            StatusCode::from_u16(s)
                .ok()
                .filter(|s| (200..600).contains(&s.as_u16()))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let body = self.error_codes.as_deref().map(captcha::refusal);
        match (status.filter(|s| !s.is_success()), body) {
            (Some(status), body) => Some((status, body)),
            (None, Some(body)) => Some((status.unwrap_or(StatusCode::OK), Some(body))),
            (None, None) => None,
        }
    }
}

/// How a siteverify call was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptchaOutcome {
    /// `success: true` (a repeated `idempotency_key` included).
    Passed,
    /// `success: false` from the provider's checks (`errorCodes` says why).
    Refused,
    /// A scripted failure: a non-2xx status, or scripted `errorCodes`.
    Failed,
}

/// One siteverify call, whatever it was answered.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptchaVerification {
    /// 1 for the first call after start or reset, then one more per call.
    pub seq: u64,
    pub provider: CaptchaProvider,
    /// The `response` as received (the secret is never kept).
    pub token: Option<String>,
    pub remoteip: Option<String>,
    /// hCaptcha's `sitekey`, as received.
    pub sitekey: Option<String>,
    /// Turnstile's `idempotency_key`, as received.
    pub idempotency_key: Option<String>,
    pub outcome: CaptchaOutcome,
    /// The answer's `error-codes` (empty for a pass, and for a bare scripted status).
    pub error_codes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The scripted wait before the answer.
    pub hang_ms: Option<u64>,
    pub received_at_ms: u64,
}

/// Where and how the widget was solved, for the token it gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Solve {
    /// The page's host (siteverify's `hostname`).
    pub hostname: String,
    /// Turnstile's widget `action` and `cData`.
    pub action: String,
    pub cdata: String,
}

/// A siteverify answer: its status, its body (JSON, or plain text for a bare outage) and
/// how long to hold it back.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub json: Option<Value>,
    pub hang: Option<Duration>,
}

/// The human check's state; part of `Recorded`, under its lock.
#[derive(Default)]
pub(crate) struct CaptchaLog {
    tokens: HashMap<String, Token>,
    scripts: VecDeque<ScriptedCaptcha>,
    verifications: Vec<CaptchaVerification>,
    /// How far the captcha clock runs ahead of the wall clock.
    ahead_ms: u64,
}

impl CaptchaLog {
    fn now_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add(self.ahead_ms)
    }

    /// Moves the captcha clock forward: tokens age, nothing else does.
    pub fn advance(&mut self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms = self.ahead_ms.saturating_add(by);
    }

    /// A fresh token of `provider`, good once, for its provider's life from now.
    pub fn issue(&mut self, provider: CaptchaProvider, solve: Solve, wall_ms: u64) -> String {
        let token = ids::captcha_token(provider.name());
        self.tokens.insert(
            token.clone(),
            Token {
                provider,
                issued_at_ms: self.now_ms(wall_ms),
                hostname: solve.hostname,
                action: solve.action,
                cdata: solve.cdata,
                spent: None,
            },
        );
        token
    }

    pub fn script(&mut self, answers: Vec<ScriptedCaptcha>) {
        self.scripts.extend(answers);
    }

    /// Answers a siteverify call to `provider` (`request` `None`: malformed) for `site`:
    /// the next script's failure, else the provider's verdict, which spends a good token.
    /// Records the call either way.
    pub fn siteverify(
        &mut self,
        provider: CaptchaProvider,
        site: &CaptchaSite,
        request: Option<VerifyRequest>,
        wall_ms: u64,
    ) -> Answer {
        let script = self.scripts.pop_front().unwrap_or_default();
        let hang = script.hang_ms.map(Duration::from_millis);
        let (outcome, status, json) = match script.failure() {
            Some((status, json)) => (CaptchaOutcome::Failed, status, json),
            None => {
                let json = self.verdict(provider, site, request.as_ref(), wall_ms);
                let outcome = if json["success"] == true {
                    CaptchaOutcome::Passed
                } else {
                    CaptchaOutcome::Refused
                };
                (outcome, StatusCode::OK, Some(json))
            }
        };
        let request = request.unwrap_or_default();
        self.verifications.push(CaptchaVerification {
            seq: self.verifications.len() as u64 + 1,
            provider,
            token: request.response,
            remoteip: request.remoteip,
            sitekey: request.sitekey,
            idempotency_key: request.idempotency_key,
            outcome,
            error_codes: json.as_ref().map(error_codes).unwrap_or_default(),
            status: status.as_u16(),
            hang_ms: script.hang_ms,
            received_at_ms: wall_ms,
        });
        Answer { status, json, hang }
    }

    /// The provider's answer to `request`; a pass spends the token.
    fn verdict(
        &mut self,
        provider: CaptchaProvider,
        site: &CaptchaSite,
        request: Option<&VerifyRequest>,
        wall_ms: u64,
    ) -> Value {
        let now_ms = self.now_ms(wall_ms);
        let named = request.and_then(|r| r.response.as_ref());
        let token = named.and_then(|t| self.tokens.get_mut(t));
        let decision = captcha::decide(provider, site, request, token.as_deref(), now_ms);
        if let (Decision::Pass, Some(token)) = (&decision, token) {
            token.spent = Some(request.and_then(|r| r.idempotency_key.clone()));
        }
        let token = named.and_then(|t| self.tokens.get(t));
        captcha::answer(provider, &decision, token)
    }

    pub fn verifications(&self) -> Vec<CaptchaVerification> {
        self.verifications.clone()
    }
}

/// The `error-codes` of an answer.
fn error_codes(json: &Value) -> Vec<String> {
    json["error-codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captcha::CaptchaKeys;

    fn scripted(json: serde_json::Value) -> ScriptedCaptcha {
        serde_json::from_value(json).expect("a script")
    }

    #[test]
    fn a_script_fails_with_its_status_or_its_codes() {
        let bare = scripted(serde_json::json!({"status": 503})).failure();
        assert_eq!(bare, Some((StatusCode::SERVICE_UNAVAILABLE, None)));
        let coded = scripted(serde_json::json!({"errorCodes": ["internal-error"]})).failure();
        let (status, body) = coded.expect("a failure");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.expect("JSON")["error-codes"][0], "internal-error");
        let odd = scripted(serde_json::json!({"status": 42})).failure();
        assert_eq!(odd.map(|f| f.0), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(scripted(serde_json::json!({"status": 200})).failure(), None);
        assert_eq!(scripted(serde_json::json!({"hangMs": 10})).failure(), None);
        assert!(serde_json::from_value::<ScriptedCaptcha>(serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn a_scripted_failure_leaves_the_token_good_and_the_clock_ages_tokens() {
        let keys = CaptchaKeys::default();
        let site = keys.site(CaptchaProvider::Turnstile);
        let mut log = CaptchaLog::default();
        let wall = 1_795_580_000_000;
        let request = |token: String| {
            Some(VerifyRequest {
                secret: Some(site.secret.clone()),
                response: Some(token),
                ..VerifyRequest::default()
            })
        };
        let first = log.issue(CaptchaProvider::Turnstile, Solve::default(), wall);
        log.script(vec![ScriptedCaptcha {
            status: Some(503),
            ..ScriptedCaptcha::default()
        }]);
        let outage = log.siteverify(
            CaptchaProvider::Turnstile,
            site,
            request(first.clone()),
            wall,
        );
        assert_eq!(
            (outage.status, outage.json),
            (StatusCode::SERVICE_UNAVAILABLE, None)
        );
        let pass = log.siteverify(CaptchaProvider::Turnstile, site, request(first), wall);
        assert_eq!(pass.json.expect("JSON")["success"], true);

        let second = log.issue(CaptchaProvider::Turnstile, Solve::default(), wall);
        log.advance(Duration::from_secs(300));
        let late = log.siteverify(CaptchaProvider::Turnstile, site, request(second), wall);
        assert_eq!(
            late.json.expect("JSON")["error-codes"][0],
            "timeout-or-duplicate"
        );
        let outcomes: Vec<_> = log.verifications().iter().map(|v| v.outcome).collect();
        assert_eq!(
            outcomes,
            [
                CaptchaOutcome::Failed,
                CaptchaOutcome::Passed,
                CaptchaOutcome::Refused
            ]
        );
    }
}
