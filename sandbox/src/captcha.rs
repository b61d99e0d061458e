//! A stand-in for the two human-check providers' server-side verification, Cloudflare
//! Turnstile (`POST /turnstile/v0/siteverify`) and hCaptcha (`POST /hcaptcha/siteverify`),
//! with the tokens a person's widget would hand the page (`captcha_routes.rs`, and the
//! widget stub `captcha.js`), modelled on each provider's documentation:
//!
//! - Turnstile, "Server-side validation"
//!   (https://developers.cloudflare.com/turnstile/get-started/server-side-validation/):
//!   `secret` and `response` required, `remoteip` ("not strictly validated") and
//!   `idempotency_key` optional; form-encoded or JSON, the answer always JSON with
//!   `success`. A pass adds `challenge_ts` (ISO 8601), `hostname`, `error-codes: []`,
//!   `action` and `cdata`; a failure lists its `error-codes`: `missing-input-secret`,
//!   `invalid-input-secret`, `missing-input-response`, `invalid-input-response`,
//!   `bad-request` (malformed), `timeout-or-duplicate` (redeemed before, or issued over
//!   five minutes ago), `internal-error` (may be retried). A token is valid once, for 300
//!   seconds, and at most 2048 characters; a request repeating the `idempotency_key` a
//!   token was redeemed with gets the first answer again.
//! - Turnstile, "Testing" (https://developers.cloudflare.com/turnstile/troubleshooting/testing/):
//!   the dummy site key `1x00000000000000000000AA` and secret
//!   `1x0000000000000000000000000000000AA`, which are the sandbox's defaults.
//! - hCaptcha, "Verify the User Response Server Side" and its "Siteverify Error Codes
//!   Table" (https://docs.hcaptcha.com/#verify-the-user-response-server-side): form-encoded
//!   `secret`, `response`, optional `remoteip` and `sitekey` (the site key the token must
//!   belong to); a pass is `success`, `challenge_ts`, `hostname`, `credit`; the codes
//!   `missing-input-secret`, `invalid-input-secret`, `missing-input-response`,
//!   `invalid-input-response`, `expired-input-response`, `already-seen-response`,
//!   `invalid-or-already-seen-response` (the older catch-all, not answered here),
//!   `invalid-remoteip`, `sitekey-secret-mismatch`, `not-using-dummy-passcode`,
//!   `bad-request`. The same codes are in hCaptcha's own clients (hcaptcha-go cites that
//!   page).
//! - hCaptcha, "Integration Testing: Test Keys"
//!   (https://docs.hcaptcha.com/#integration-testing-test-keys): site key
//!   `10000000-ffff-ffff-ffff-000000000001`, secret
//!   `0x0000000000000000000000000000000000000000`, the sandbox's defaults. A token lapses
//!   after two minutes (hCaptcha's SDKs expire it then: hcaptcha-android-sdk's README,
//!   `tokenExpiration`, "default 2 min").
//!
//! Assumptions (no page says): the order of the checks (secret, site key, token present,
//! remote IP, then the token itself); a verdict, failures included, is HTTP 200; a
//! failure lists one code; only a pass spends a token, and a repeated
//! `idempotency_key` gets the first pass again whenever it comes; hCaptcha reads the body
//! as a form whatever its type; an expired Turnstile token gets `timeout-or-duplicate`
//! (the docs let `invalid-input-response` say "expired" too). The sandbox's tokens are
//! its own, good once: the providers' dummy tokens (`XXXX.DUMMY.TOKEN.XXXX`,
//! `10000000-aaaa-bbbb-cccc-000000000001`), which the real test secrets always pass, are
//! not modelled, though the defaults are those keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{event, form};

/// Turnstile's dummy site key ("always passes", visible): the sandbox's default.
pub const DEFAULT_TURNSTILE_SITE_KEY: &str = "1x00000000000000000000AA";
/// Turnstile's dummy secret key ("always passes"): the sandbox's default.
pub const DEFAULT_TURNSTILE_SECRET: &str = "1x0000000000000000000000000000000AA";
/// hCaptcha's test site key: the sandbox's default.
pub const DEFAULT_HCAPTCHA_SITE_KEY: &str = "10000000-ffff-ffff-ffff-000000000001";
/// hCaptcha's test secret: the sandbox's default.
pub const DEFAULT_HCAPTCHA_SECRET: &str = "0x0000000000000000000000000000000000000000";

/// Who checks: the providers the api can be configured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptchaProvider {
    /// Cloudflare Turnstile.
    #[default]
    Turnstile,
    Hcaptcha,
}

impl CaptchaProvider {
    pub fn name(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "turnstile",
            CaptchaProvider::Hcaptcha => "hcaptcha",
        }
    }

    /// How long a token is good for: Turnstile's 300 s, hCaptcha's two minutes.
    pub fn token_life(self) -> Duration {
        match self {
            CaptchaProvider::Turnstile => Duration::from_secs(300),
            CaptchaProvider::Hcaptcha => Duration::from_secs(120),
        }
    }

    /// The code for a token redeemed before.
    fn spent_code(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "timeout-or-duplicate",
            CaptchaProvider::Hcaptcha => "already-seen-response",
        }
    }

    /// The code for a token past its life.
    fn expired_code(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "timeout-or-duplicate",
            CaptchaProvider::Hcaptcha => "expired-input-response",
        }
    }
}

/// One site's keys with a provider: the widget shows the site key, the server redeems
/// tokens with the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptchaSite {
    pub site_key: String,
    pub secret: String,
}

/// The one site the sandbox knows with each provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptchaKeys {
    pub turnstile: CaptchaSite,
    pub hcaptcha: CaptchaSite,
}

impl Default for CaptchaKeys {
    /// The providers' documented test keys.
    fn default() -> Self {
        Self {
            turnstile: CaptchaSite {
                site_key: DEFAULT_TURNSTILE_SITE_KEY.into(),
                secret: DEFAULT_TURNSTILE_SECRET.into(),
            },
            hcaptcha: CaptchaSite {
                site_key: DEFAULT_HCAPTCHA_SITE_KEY.into(),
                secret: DEFAULT_HCAPTCHA_SECRET.into(),
            },
        }
    }
}

impl CaptchaKeys {
    pub fn site(&self, provider: CaptchaProvider) -> &CaptchaSite {
        match provider {
            CaptchaProvider::Turnstile => &self.turnstile,
            CaptchaProvider::Hcaptcha => &self.hcaptcha,
        }
    }
}

/// A site's keys from the settings `{prefix}_SITE_KEY` and `{prefix}_SECRET`, trimmed;
/// neither may be blank.
pub(crate) fn site(prefix: &str, site_key: String, secret: String) -> Result<CaptchaSite, String> {
    let (site_key, secret) = (site_key.trim().to_owned(), secret.trim().to_owned());
    if site_key.is_empty() {
        return Err(format!("{prefix}_SITE_KEY is empty"));
    }
    if secret.is_empty() {
        return Err(format!("{prefix}_SECRET is empty"));
    }
    Ok(CaptchaSite { site_key, secret })
}

/// What a siteverify request carries, empty values taken as missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VerifyRequest {
    pub secret: Option<String>,
    pub response: Option<String>,
    pub remoteip: Option<String>,
    /// Turnstile's.
    pub idempotency_key: Option<String>,
    /// hCaptcha's.
    pub sitekey: Option<String>,
}

const FIELDS: [&str; 5] = [
    "secret",
    "response",
    "remoteip",
    "idempotency_key",
    "sitekey",
];

impl VerifyRequest {
    fn from_fields(mut get: impl FnMut(&str) -> Option<String>) -> Self {
        let [secret, response, remoteip, idempotency_key, sitekey] =
            FIELDS.map(|name| get(name).filter(|v| !v.is_empty()));
        Self {
            secret,
            response,
            remoteip,
            idempotency_key,
            sitekey,
        }
    }

    /// A form body; of a repeated field, the first.
    pub(crate) fn from_form(body: &[u8]) -> Self {
        let pairs = form::parse(body);
        Self::from_fields(|name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// A JSON body (Turnstile's other form): an object whose fields are strings or null;
    /// anything else is malformed (`None`: `bad-request`).
    pub(crate) fn from_json(body: &[u8]) -> Option<Self> {
        let object = match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(object) => object,
            _ => return None,
        };
        let malformed = FIELDS.iter().any(|name| {
            object
                .get(*name)
                .is_some_and(|v| !v.is_string() && !v.is_null())
        });
        if malformed {
            return None;
        }
        Some(Self::from_fields(|name| {
            object.get(name).and_then(Value::as_str).map(str::to_owned)
        }))
    }
}

/// A token the sandbox handed out, as its provider keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub provider: CaptchaProvider,
    /// On the captcha clock (`CaptchaLog`), Unix milliseconds.
    pub issued_at_ms: u64,
    /// The page's host, as the widget saw it.
    pub hostname: String,
    /// Turnstile's widget `action` and `cData`, echoed by siteverify.
    pub action: String,
    pub cdata: String,
    /// Spent, and with which `idempotency_key` (if any).
    pub spent: Option<Option<String>>,
}

/// What siteverify makes of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A good token, now spent.
    Pass,
    /// The token's redemption repeated under its `idempotency_key`: the first pass again.
    Replay,
    /// `success: false` with this code.
    Refuse(&'static str),
}

/// The provider's checks of `request` (`None`: malformed) against the site's keys and
/// the token it names (`None`: never handed out by this provider), at `now_ms` on the
/// captcha clock.
pub(crate) fn decide(
    provider: CaptchaProvider,
    site: &CaptchaSite,
    request: Option<&VerifyRequest>,
    token: Option<&Token>,
    now_ms: u64,
) -> Decision {
    let Some(request) = request else {
        return Decision::Refuse("bad-request");
    };
    let Some(secret) = &request.secret else {
        return Decision::Refuse("missing-input-secret");
    };
    if *secret != site.secret {
        return Decision::Refuse("invalid-input-secret");
    }
    let hcaptcha = provider == CaptchaProvider::Hcaptcha;
    if hcaptcha
        && request
            .sitekey
            .as_ref()
            .is_some_and(|k| *k != site.site_key)
    {
        return Decision::Refuse("sitekey-secret-mismatch");
    }
    if request.response.is_none() {
        return Decision::Refuse("missing-input-response");
    }
    let bad_ip = |ip: &String| ip.parse::<std::net::IpAddr>().is_err();
    if hcaptcha && request.remoteip.as_ref().is_some_and(bad_ip) {
        return Decision::Refuse("invalid-remoteip");
    }
    let Some(token) = token.filter(|t| t.provider == provider) else {
        return Decision::Refuse("invalid-input-response");
    };
    match &token.spent {
        Some(key) if key.is_some() && *key == request.idempotency_key && !hcaptcha => {
            return Decision::Replay;
        }
        Some(_) => return Decision::Refuse(provider.spent_code()),
        None => {}
    }
    let life = u64::try_from(provider.token_life().as_millis()).unwrap_or(u64::MAX);
    if now_ms.saturating_sub(token.issued_at_ms) >= life {
        return Decision::Refuse(provider.expired_code());
    }
    Decision::Pass
}

/// The JSON siteverify answers a decision with, in the provider's shape.
pub(crate) fn answer(
    provider: CaptchaProvider,
    decision: &Decision,
    token: Option<&Token>,
) -> Value {
    let (Decision::Pass | Decision::Replay, Some(token)) = (decision, token) else {
        let code = match decision {
            Decision::Refuse(code) => code,
            Decision::Pass | Decision::Replay => "internal-error",
        };
        return refusal(&[code]);
    };
    let challenge_ts = event::iso8601_utc(token.issued_at_ms);
    match provider {
        CaptchaProvider::Turnstile => json!({
            "success": true,
            "challenge_ts": challenge_ts,
            "hostname": token.hostname,
            "error-codes": [],
            "action": token.action,
            "cdata": token.cdata,
        }),
        CaptchaProvider::Hcaptcha => json!({
            "success": true,
            "challenge_ts": challenge_ts,
            "hostname": token.hostname,
            "credit": false,
        }),
    }
}

/// `{"success":false,"error-codes":[…]}`.
pub(crate) fn refusal<S: AsRef<str>>(codes: &[S]) -> Value {
    let codes: Vec<&str> = codes.iter().map(AsRef::as_ref).collect();
    json!({ "success": false, "error-codes": codes })
}

#[cfg(test)]
mod tests {
    use super::*;

    use CaptchaProvider::{Hcaptcha, Turnstile};

    const ISSUED: u64 = 1_795_580_000_000;

    fn token(provider: CaptchaProvider) -> Token {
        Token {
            provider,
            issued_at_ms: ISSUED,
            hostname: "localhost".into(),
            action: "login".into(),
            cdata: String::new(),
            spent: None,
        }
    }

    fn request(provider: CaptchaProvider) -> VerifyRequest {
        VerifyRequest {
            secret: Some(CaptchaKeys::default().site(provider).secret.clone()),
            response: Some("a-token".into()),
            ..VerifyRequest::default()
        }
    }

    fn decide_at(
        provider: CaptchaProvider,
        request: &VerifyRequest,
        token: Option<&Token>,
        after: Duration,
    ) -> Decision {
        let keys = CaptchaKeys::default();
        let now = ISSUED + u64::try_from(after.as_millis()).expect("short");
        decide(provider, keys.site(provider), Some(request), token, now)
    }

    #[test]
    fn a_fresh_token_with_the_secret_passes_once_then_is_a_duplicate() {
        for provider in [Turnstile, Hcaptcha] {
            let mut good = token(provider);
            let asked = request(provider);
            assert_eq!(
                decide_at(provider, &asked, Some(&good), Duration::ZERO),
                Decision::Pass
            );
            good.spent = Some(None);
            let again = decide_at(provider, &asked, Some(&good), Duration::ZERO);
            let expected = match provider {
                Turnstile => "timeout-or-duplicate",
                Hcaptcha => "already-seen-response",
            };
            assert_eq!(again, Decision::Refuse(expected));
        }
    }

    #[test]
    fn a_token_lapses_at_its_providers_life() {
        for (provider, life, code) in [
            (Turnstile, 300, "timeout-or-duplicate"),
            (Hcaptcha, 120, "expired-input-response"),
        ] {
            let good = token(provider);
            let asked = request(provider);
            let at = |secs| decide_at(provider, &asked, Some(&good), Duration::from_secs(secs));
            assert_eq!(at(life - 1), Decision::Pass, "{provider:?}");
            assert_eq!(at(life), Decision::Refuse(code), "{provider:?}");
        }
    }

    #[test]
    fn each_missing_or_wrong_input_gets_its_code() {
        for provider in [Turnstile, Hcaptcha] {
            let good = token(provider);
            let refused = |asked: VerifyRequest, token: Option<&Token>| {
                decide_at(provider, &asked, token, Duration::ZERO)
            };
            let base = request(provider);
            let code = |c| Decision::Refuse(c);
            assert_eq!(
                refused(
                    VerifyRequest {
                        secret: None,
                        ..base.clone()
                    },
                    Some(&good)
                ),
                code("missing-input-secret")
            );
            let wrong = Some("0x1".to_owned());
            assert_eq!(
                refused(
                    VerifyRequest {
                        secret: wrong,
                        ..base.clone()
                    },
                    Some(&good)
                ),
                code("invalid-input-secret")
            );
            assert_eq!(
                refused(
                    VerifyRequest {
                        response: None,
                        ..base.clone()
                    },
                    Some(&good)
                ),
                code("missing-input-response")
            );
            assert_eq!(refused(base.clone(), None), code("invalid-input-response"));
            let other = token(match provider {
                Turnstile => Hcaptcha,
                Hcaptcha => Turnstile,
            });
            assert_eq!(
                refused(base.clone(), Some(&other)),
                code("invalid-input-response"),
                "a token of the other provider"
            );
            let keys = CaptchaKeys::default();
            assert_eq!(
                decide(provider, keys.site(provider), None, Some(&good), ISSUED),
                code("bad-request")
            );
        }
    }

    #[test]
    fn hcaptcha_checks_the_site_key_and_the_remote_ip() {
        let good = token(Hcaptcha);
        let base = request(Hcaptcha);
        let at = |asked: VerifyRequest| decide_at(Hcaptcha, &asked, Some(&good), Duration::ZERO);
        let site_key = |key: &str| VerifyRequest {
            sitekey: Some(key.into()),
            ..base.clone()
        };
        assert_eq!(at(site_key(DEFAULT_HCAPTCHA_SITE_KEY)), Decision::Pass);
        assert_eq!(
            at(site_key("20000000-ffff-ffff-ffff-000000000002")),
            Decision::Refuse("sitekey-secret-mismatch")
        );
        let ip = |ip: &str| VerifyRequest {
            remoteip: Some(ip.into()),
            ..base.clone()
        };
        assert_eq!(at(ip("203.0.113.7")), Decision::Pass);
        assert_eq!(at(ip("2001:db8::1")), Decision::Pass);
        assert_eq!(at(ip("somewhere")), Decision::Refuse("invalid-remoteip"));
        // Turnstile does not strictly validate it.
        let turnstile = VerifyRequest {
            remoteip: Some("somewhere".into()),
            ..request(Turnstile)
        };
        let good = token(Turnstile);
        assert_eq!(
            decide_at(Turnstile, &turnstile, Some(&good), Duration::ZERO),
            Decision::Pass
        );
    }

    #[test]
    fn turnstile_answers_a_repeated_idempotency_key_with_the_first_pass() {
        let mut good = token(Turnstile);
        let keyed = VerifyRequest {
            idempotency_key: Some("4ba1e0b4-1f9c-4a5e-9d62-d1b8a6b3c7e2".into()),
            ..request(Turnstile)
        };
        good.spent = Some(keyed.idempotency_key.clone());
        assert_eq!(
            decide_at(Turnstile, &keyed, Some(&good), Duration::ZERO),
            Decision::Replay
        );
        let other_key = VerifyRequest {
            idempotency_key: Some("another".into()),
            ..keyed.clone()
        };
        assert_eq!(
            decide_at(Turnstile, &other_key, Some(&good), Duration::ZERO),
            Decision::Refuse("timeout-or-duplicate")
        );
        let no_key = request(Turnstile);
        assert_eq!(
            decide_at(Turnstile, &no_key, Some(&good), Duration::ZERO),
            Decision::Refuse("timeout-or-duplicate")
        );
    }

    #[test]
    fn a_sites_keys_are_trimmed_and_neither_may_be_blank() {
        let trimmed = site("SANDBOX_TURNSTILE", " key ".into(), "secret\n".into());
        assert_eq!(
            trimmed,
            Ok(CaptchaSite {
                site_key: "key".into(),
                secret: "secret".into()
            })
        );
        assert_eq!(
            site("SANDBOX_HCAPTCHA", "key".into(), " ".into()),
            Err("SANDBOX_HCAPTCHA_SECRET is empty".into())
        );
        assert_eq!(
            site("SANDBOX_HCAPTCHA", String::new(), "s".into()),
            Err("SANDBOX_HCAPTCHA_SITE_KEY is empty".into())
        );
    }

    #[test]
    fn bodies_read_as_forms_or_turnstiles_json() {
        let form = VerifyRequest::from_form(b"secret=s&response=&remoteip=1.2.3.4&response=x");
        assert_eq!(form.secret.as_deref(), Some("s"));
        assert_eq!(form.response, None, "the first, empty, counts as missing");
        assert_eq!(form.remoteip.as_deref(), Some("1.2.3.4"));
        let json = VerifyRequest::from_json(
            br#"{"secret":"s","response":"t","remoteip":null,"idempotency_key":"k"}"#,
        )
        .expect("an object of strings");
        assert_eq!(
            (json.secret.as_deref(), json.response.as_deref()),
            (Some("s"), Some("t"))
        );
        assert_eq!(json.idempotency_key.as_deref(), Some("k"));
        assert_eq!(json.remoteip, None);
        for malformed in [&b"secret=s"[..], b"[1]", br#"{"secret":1,"response":"t"}"#] {
            assert_eq!(VerifyRequest::from_json(malformed), None);
        }
    }

    #[test]
    fn passes_and_refusals_take_each_providers_shape() {
        let good = token(Turnstile);
        let turnstile = answer(Turnstile, &Decision::Pass, Some(&good));
        assert_eq!(turnstile["success"], true);
        assert_eq!(turnstile["error-codes"], json!([]));
        assert_eq!(turnstile["challenge_ts"], "2026-11-25T04:13:20.000Z");
        assert_eq!(
            (
                &turnstile["hostname"],
                &turnstile["action"],
                &turnstile["cdata"]
            ),
            (&json!("localhost"), &json!("login"), &json!(""))
        );
        let hcaptcha = answer(Hcaptcha, &Decision::Replay, Some(&token(Hcaptcha)));
        assert_eq!(hcaptcha["success"], true);
        assert_eq!(hcaptcha["credit"], false);
        assert!(hcaptcha.get("error-codes").is_none());
        assert_eq!(
            answer(Hcaptcha, &Decision::Refuse("already-seen-response"), None),
            json!({"success": false, "error-codes": ["already-seen-response"]})
        );
    }
}
