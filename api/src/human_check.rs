//! The human check (a CAPTCHA) send-otp asks for under pressure, as Supabase Auth does:
//! the page gets a token from the provider's widget, sends it as `captchaToken`, and the
//! api redeems it once through the provider's server-side siteverify API (Cloudflare
//! Turnstile: developers.cloudflare.com/turnstile/get-started/server-side-validation;
//! hCaptcha: docs.hcaptcha.com, "Verify the User Response Server Side"). A phone's sends
//! past `CAPTCHA_AFTER_SENDS` in an hour need one, and so do new codes while
//! `SENDS_PER_MINUTE` or the country's budget is `CAPTCHA_BUDGET_PERCENT` full: a person
//! still gets through what an attacker's script fills.

use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use otp_shared::config::{ConfigError, real_secret};

/// Longest wait for the provider's answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The providers' published test secrets: with the provider's own siteverify they pass
/// anyone's dummy token (Turnstile's "Testing" page; hCaptcha's "Integration Testing").
const TEST_SECRETS: [&str; 4] = [
    "1x0000000000000000000000000000000AA",
    "2x0000000000000000000000000000000AA",
    "3x0000000000000000000000000000000AA",
    "0x0000000000000000000000000000000000000000",
];
/// The most of the provider's answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Who checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Turnstile,
    Hcaptcha,
}

impl Provider {
    /// Its name in settings and answers.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Turnstile => "turnstile",
            Provider::Hcaptcha => "hcaptcha",
        }
    }

    fn verify_url(self) -> &'static str {
        match self {
            Provider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            Provider::Hcaptcha => "https://api.hcaptcha.com/siteverify",
        }
    }

    /// The longest token it hands out: Turnstile documents 2048 characters; hCaptcha
    /// documents none, and its tokens run to a few thousand.
    fn max_token_chars(self) -> usize {
        match self {
            Provider::Turnstile => 2048,
            Provider::Hcaptcha => 16 * 1024,
        }
    }

    fn script_url(self) -> &'static str {
        match self {
            Provider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/api.js",
            Provider::Hcaptcha => "https://js.hcaptcha.com/1/api.js",
        }
    }
}

/// The human check's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct HumanCheckArgs {
    /// `turnstile` (Cloudflare) or `hcaptcha`; empty: no human check.
    #[arg(long, env = "CAPTCHA_PROVIDER", default_value = "")]
    pub captcha_provider: String,
    /// The provider's site key, which the login page's widget shows.
    #[arg(long, env = "CAPTCHA_SITE_KEY")]
    pub captcha_site_key: Option<String>,
    /// The provider's secret key, which redeems tokens.
    #[arg(long, env = "CAPTCHA_SECRET", hide_env_values = true)]
    pub captcha_secret: Option<String>,
    /// The provider's siteverify URL (default: the provider's own; the sandbox's in
    /// development and tests). https, or http to this machine or with DEV_MODE.
    #[arg(long, env = "CAPTCHA_VERIFY_URL")]
    pub captcha_verify_url: Option<String>,
    /// The widget's script, which the login page loads (default: the provider's own).
    #[arg(long, env = "CAPTCHA_SCRIPT_URL")]
    pub captcha_script_url: Option<String>,
    /// Sends a phone gets in an hour without a check; the rest, up to
    /// `PHONE_SENDS_PER_HOUR`, need one (so it must be less than that).
    #[arg(long, env = "CAPTCHA_AFTER_SENDS", default_value_t = 3)]
    pub captcha_after_sends: u32,
    /// How full `SENDS_PER_MINUTE` or a country's budget may get with new codes that
    /// had no check; past it, new codes need one. 100: never for budgets.
    #[arg(long, env = "CAPTCHA_BUDGET_PERCENT", default_value_t = 50)]
    pub captcha_budget_percent: u8,
}

/// The checked settings.
#[derive(Clone, Debug)]
pub struct HumanCheckSettings {
    pub provider: Provider,
    pub site_key: String,
    secret: SecretString,
    verify_url: String,
    /// The widget's script.
    pub script_url: String,
    /// Where the script is served from: the login page's policy lets it in.
    script_origin: String,
    /// Sends a phone gets in an hour without a check (at least 1).
    pub after_sends: u32,
    /// Share of a send budget new codes without a check may fill, in percent (1 to 100).
    pub budget_percent: u8,
}

impl HumanCheckArgs {
    pub fn validate(self, dev_mode: bool) -> Result<Option<HumanCheckSettings>, ConfigError> {
        let provider = match self.captcha_provider.trim().to_ascii_lowercase().as_str() {
            "" | "off" => return Ok(None),
            "turnstile" => Provider::Turnstile,
            "hcaptcha" => Provider::Hcaptcha,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "CAPTCHA_PROVIDER",
                    problem: "must be turnstile, hcaptcha or empty",
                });
            }
        };
        let site_key = self
            .captcha_site_key
            .filter(|k| !k.trim().is_empty())
            .ok_or(ConfigError::Missing("CAPTCHA_SITE_KEY"))?;
        let secret = self
            .captcha_secret
            .filter(|s| !s.trim().is_empty())
            .ok_or(ConfigError::Missing("CAPTCHA_SECRET"))?;
        let verify_url = self
            .captcha_verify_url
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| provider.verify_url().to_owned());
        if !dev_mode && verify_url == provider.verify_url() && TEST_SECRETS.contains(&secret.trim())
        {
            return Err(ConfigError::Invalid {
                name: "CAPTCHA_SECRET",
                problem: "is the provider's published test secret, which passes anyone's dummy token: set your own (or DEV_MODE=true)",
            });
        }
        if !otp_shared::config::is_private_url_usable(&verify_url, dev_mode) {
            return Err(ConfigError::Invalid {
                name: "CAPTCHA_VERIFY_URL",
                problem: "must be https (http only to this machine, or with DEV_MODE=true)",
            });
        }
        if self.captcha_after_sends == 0 {
            return Err(ConfigError::Invalid {
                name: "CAPTCHA_AFTER_SENDS",
                problem: "must be at least 1",
            });
        }
        if !(1..=100).contains(&self.captcha_budget_percent) {
            return Err(ConfigError::Invalid {
                name: "CAPTCHA_BUDGET_PERCENT",
                problem: "must be 1 to 100",
            });
        }
        let script_url = self
            .captcha_script_url
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| provider.script_url().to_owned());
        let script_origin = reqwest::Url::parse(&script_url)
            .ok()
            .filter(|url| otp_shared::config::is_private_url_usable(url.as_str(), dev_mode))
            .map(|url| url.origin().ascii_serialization())
            .filter(|origin| origin != "null")
            .ok_or(ConfigError::Invalid {
                name: "CAPTCHA_SCRIPT_URL",
                problem: "must be an https URL (http only to this machine, or with DEV_MODE=true)",
            })?;
        Ok(Some(HumanCheckSettings {
            provider,
            site_key: site_key.trim().to_owned(),
            secret: real_secret("CAPTCHA_SECRET", SecretString::from(secret), dev_mode)?,
            verify_url,
            script_url,
            script_origin,
            after_sends: self.captcha_after_sends,
            budget_percent: self.captcha_budget_percent,
        }))
    }
}

impl HumanCheckSettings {
    /// The sources the login page's Content-Security-Policy must allow for the widget:
    /// its script's origin (Turnstile's frame comes from there too), and hCaptcha's own
    /// domains, where its frames and calls come from (its documentation lists them).
    pub fn page_sources(&self) -> Vec<String> {
        let mut sources = vec![self.script_origin.clone()];
        if self.provider == Provider::Hcaptcha && self.script_origin == "https://js.hcaptcha.com" {
            sources.extend([
                "https://hcaptcha.com".into(),
                "https://*.hcaptcha.com".into(),
            ]);
        }
        sources
    }
}

/// Why a token could not be redeemed: the provider could not say (an outage: 503).
#[derive(Debug, thiserror::Error)]
pub enum HumanCheckError {
    #[error("the human check's provider could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("the human check's provider answered HTTP {0}")]
    Status(u16),
    #[error("the human check's provider answered something unreadable")]
    Unreadable,
    #[error("the human check's provider had an internal error")]
    ProviderError,
    /// Our keys or our request are wrong: no person's fault, and no outage either.
    #[error(
        "the human check's provider refused our request ({0:?}): check CAPTCHA_SECRET and CAPTCHA_SITE_KEY"
    )]
    Misconfigured(Vec<String>),
}

impl crate::error::DependencyError for HumanCheckError {
    fn is_outage(&self) -> bool {
        !matches!(self, HumanCheckError::Misconfigured(_))
    }
}

/// The providers' answers that say our request is wrong, not the person's token.
const OUR_MISTAKES: [&str; 6] = [
    "missing-input-secret",
    "invalid-input-secret",
    "sitekey-secret-mismatch",
    "bad-request",
    "invalid-remoteip",
    "not-using-dummy-passcode",
];

/// What the provider said of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
}

/// siteverify's answer, in the fields both providers share.
#[derive(Deserialize)]
struct Answer {
    success: bool,
    #[serde(rename = "error-codes", default)]
    error_codes: Vec<String>,
}

/// Redeems tokens with the provider.
pub struct HumanCheck {
    pub settings: HumanCheckSettings,
    http: reqwest::Client,
}

impl HumanCheck {
    pub fn new(settings: HumanCheckSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            // A redirect could carry the secret elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { settings, http })
    }

    /// Redeems `token`, which the page got for the person at `client` (when known). A token is good
    /// once: the provider refuses it the second time.
    pub async fn verify(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Verdict, HumanCheckError> {
        let verdict = self.ask(token, client).await;
        let result = match &verdict {
            Ok(Verdict::Passed) => "passed",
            Ok(Verdict::Failed) => "failed",
            Err(_) => "error",
        };
        metrics::counter!(otp_shared::metrics::HUMAN_CHECKS, "result" => result).increment(1);
        verdict
    }

    async fn ask(&self, token: &str, client: Option<IpAddr>) -> Result<Verdict, HumanCheckError> {
        let token = token.trim();
        if token.is_empty() || token.chars().count() > self.settings.provider.max_token_chars() {
            return Ok(Verdict::Failed);
        }
        let client = client.map(|ip| ip.to_string());
        let mut form = vec![
            ("secret", self.settings.secret.expose_secret()),
            ("response", token),
        ];
        if let Some(client) = &client {
            form.push(("remoteip", client.as_str()));
        }
        if self.settings.provider == Provider::Hcaptcha {
            // hCaptcha checks that the token was made for this site key.
            form.push(("sitekey", self.settings.site_key.as_str()));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&self.settings.verify_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(HumanCheckError::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(HumanCheckError::Status(status.as_u16()));
        }
        let body = read_at_most(response, MAX_ANSWER_BYTES)
            .await
            .ok_or(HumanCheckError::Unreadable)?;
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|_| HumanCheckError::Unreadable)?;
        if answer.success {
            return Ok(Verdict::Passed);
        }
        // The provider's own trouble is no verdict on the person.
        if answer.error_codes.iter().any(|c| c == "internal-error") {
            return Err(HumanCheckError::ProviderError);
        }
        if answer
            .error_codes
            .iter()
            .any(|c| OUR_MISTAKES.contains(&c.as_str()))
        {
            return Err(HumanCheckError::Misconfigured(answer.error_codes));
        }
        tracing::info!(errors = ?answer.error_codes, "a human check failed");
        Ok(Verdict::Failed)
    }
}

/// The body, or `None` when it is longer than `limit` bytes or breaks off.
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        check: HumanCheckArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<HumanCheckSettings>, ConfigError> {
        let mut all = vec!["api"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
            .expect("arguments parse")
            .check
            .validate(false)
    }

    /// Settings of a check that is on, with the test keys and `args`.
    pub(crate) fn settings(args: &[&str]) -> HumanCheckSettings {
        let mut all = args.to_vec();
        all.extend([
            "--captcha-site-key",
            "site",
            "--captcha-secret",
            "secret-of-ours",
        ]);
        parse(&all).expect("valid").expect("on")
    }

    #[test]
    fn the_check_is_off_unless_a_provider_is_named_with_its_keys() {
        assert!(parse(&[]).expect("valid").is_none());
        assert_eq!(
            parse(&["--captcha-provider", "turnstile"]).err(),
            Some(ConfigError::Missing("CAPTCHA_SITE_KEY"))
        );
        let keys = [
            "--captcha-site-key",
            "site",
            "--captcha-secret",
            "secret-of-ours",
        ];
        let mut turnstile = vec!["--captcha-provider", "Turnstile"];
        turnstile.extend(keys);
        let settings = parse(&turnstile).expect("valid").expect("on");
        assert_eq!(settings.provider, Provider::Turnstile);
        assert_eq!(
            settings.verify_url,
            "https://challenges.cloudflare.com/turnstile/v0/siteverify"
        );
        assert_eq!((settings.after_sends, settings.budget_percent), (3, 50));
        let mut remote_http = vec![
            "--captcha-provider",
            "hcaptcha",
            "--captcha-verify-url",
            "http://hcaptcha.example/siteverify",
        ];
        remote_http.extend(keys);
        assert!(matches!(
            parse(&remote_http),
            Err(ConfigError::Invalid {
                name: "CAPTCHA_VERIFY_URL",
                ..
            })
        ));
        let mut none_free = vec![
            "--captcha-provider",
            "hcaptcha",
            "--captcha-after-sends",
            "0",
        ];
        none_free.extend(keys);
        assert!(matches!(
            parse(&none_free),
            Err(ConfigError::Invalid {
                name: "CAPTCHA_AFTER_SENDS",
                ..
            })
        ));
        assert!(matches!(
            parse(&["--captcha-provider", "recaptcha"]),
            Err(ConfigError::Invalid {
                name: "CAPTCHA_PROVIDER",
                ..
            })
        ));
    }

    #[test]
    fn the_providers_test_secrets_are_refused_against_the_provider_itself() {
        for (provider, secret) in [
            ("turnstile", "1x0000000000000000000000000000000AA"),
            ("hcaptcha", "0x0000000000000000000000000000000000000000"),
        ] {
            let args = [
                "--captcha-provider",
                provider,
                "--captcha-site-key",
                "site",
                "--captcha-secret",
                secret,
            ];
            assert!(
                matches!(
                    parse(&args),
                    Err(ConfigError::Invalid {
                        name: "CAPTCHA_SECRET",
                        ..
                    })
                ),
                "{provider}"
            );
            // A stand-in (the sandbox) may use them.
            let mut sandbox = args.to_vec();
            sandbox.extend(["--captcha-verify-url", "http://127.0.0.1:8090/siteverify"]);
            assert!(parse(&sandbox).is_ok_and(|s| s.is_some()), "{provider}");
        }
    }

    #[test]
    fn the_page_lets_in_the_widgets_origin_and_only_it() {
        let keys = [
            "--captcha-site-key",
            "site",
            "--captcha-secret",
            "secret-of-ours",
        ];
        let with = |extra: &[&str]| {
            let mut args = extra.to_vec();
            args.extend(keys);
            parse(&args)
        };
        let turnstile = with(&["--captcha-provider", "turnstile"]).expect("valid");
        assert_eq!(
            turnstile.expect("on").page_sources(),
            ["https://challenges.cloudflare.com"]
        );
        let hcaptcha = with(&["--captcha-provider", "hcaptcha"]).expect("valid");
        assert_eq!(
            hcaptcha.expect("on").page_sources(),
            [
                "https://js.hcaptcha.com",
                "https://hcaptcha.com",
                "https://*.hcaptcha.com"
            ]
        );
        let sandbox = with(&[
            "--captcha-provider",
            "hcaptcha",
            "--captcha-script-url",
            "http://127.0.0.1:8090/sandbox/captcha/api.js",
        ]);
        assert_eq!(
            sandbox.expect("valid").expect("on").page_sources(),
            ["http://127.0.0.1:8090"]
        );
        for bad in [
            "http://widgets.example/api.js",
            "not a url",
            "data:text/javascript,1",
        ] {
            assert!(
                matches!(
                    with(&[
                        "--captcha-provider",
                        "turnstile",
                        "--captcha-script-url",
                        bad
                    ]),
                    Err(ConfigError::Invalid {
                        name: "CAPTCHA_SCRIPT_URL",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
