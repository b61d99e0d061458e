//! The api's settings, read once at start from flags or environment and checked.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use otp_shared::config::{CommonArgs, CommonConfig, ConfigError, real_secret, required_secret};
use secrecy::SecretString;

use otp_shared::locale::Locale;
use otp_shared::phone::ByCountry;

use crate::client::TrustedProxies;
use crate::phone::AllowedCountries;
use crate::review_phones::ReviewPhones;
use crate::token::{JwtAlgorithm, KeySet};

/// WhatsApp OTP gateway: HTTP api.
#[derive(Parser, Debug)]
#[command(name = "api", version, about)]
pub struct ApiArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Public HTTP address.
    #[arg(long, env = "API_ADDR", default_value = "0.0.0.0:8080")]
    pub api_addr: SocketAddr,
    /// Address of `/metrics` and `/healthz` for Prometheus; this machine only unless
    /// set (a container sets `0.0.0.0:9100` for its network).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9100")]
    pub metrics_addr: SocketAddr,
    /// Most connections open at once on `API_ADDR`; past it, new ones wait in the
    /// listen backlog. Keep it under the process's file limit (`ulimit -n`).
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub http_max_connections: usize,
    /// Most connections open at once on `API_ADDR` from one client address (an IPv6
    /// client's /64); more are closed at once. `TRUSTED_PROXIES` are not capped. 0
    /// turns it off.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub http_max_connections_per_client: usize,
    /// Seconds a kept-alive connection may sit idle on `API_ADDR`; behind a load
    /// balancer, make it longer than the balancer's own idle timeout.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub http_idle_timeout_seconds: u64,
    /// Wrong guesses for one phone across its codes (counted until 90 days after the
    /// last) before the phone's new codes get 10 digits; 0 turns the cap off.
    #[arg(long, env = "WRONG_GUESSES_PER_PHONE", default_value_t = 100)]
    pub wrong_guesses_per_phone: u32,
    /// Wrong guesses allowed per code.
    #[arg(long, env = "OTP_MAX_ATTEMPTS", default_value_t = 3)]
    pub otp_max_attempts: u32,
    /// Digits in a code, 4 to 10.
    #[arg(long, env = "OTP_LENGTH", default_value_t = 6)]
    pub otp_length: u32,
    /// What signs access tokens: `HS256` (with `JWT_SECRET`), or `EdDSA` / `ES256`
    /// (with `JWT_PRIVATE_KEY_FILE`), whose public keys other services read from
    /// `/.well-known/jwks.json`.
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "HS256")]
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 key for tokens (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// EdDSA / ES256: PEM (PKCS#8) private key files, comma-separated. The first signs;
    /// all verify and are published, so a new key can be announced before it signs and
    /// an old one kept until its tokens have expired.
    #[arg(long, env = "JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<String>,
    /// Serve the login page at `/`.
    #[arg(long, env = "LOGIN_PAGE", default_value_t = false, action = clap::ArgAction::Set)]
    pub login_page: bool,
    /// Development: the WATI sandbox's inbox page, linked from the login page so a person
    /// can read the code without a phone (`scripts/dev` sets it).
    #[arg(long, env = "LOGIN_PAGE_INBOX_URL")]
    pub login_page_inbox_url: Option<String>,
    /// Access token lifetime, in seconds (sessions go on through refresh tokens).
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 900)]
    pub jwt_ttl_seconds: u64,
    /// Refresh token (session) lifetime, in seconds.
    #[arg(long, env = "REFRESH_TTL_SECONDS", default_value_t = 2_592_000)]
    pub refresh_ttl_seconds: u64,
    /// PostgreSQL, where users and refresh sessions live (its value is not shown: it may
    /// carry a password).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/otp_gateway",
        hide_env_values = true
    )]
    pub database_url: String,
    /// `iss` claim of issued tokens; tokens with another issuer are refused.
    #[arg(long, env = "JWT_ISSUER", default_value = "otp-gateway")]
    pub jwt_issuer: String,
    /// Gap between two sends to one phone, in seconds: doubled for each send of the
    /// hour no login followed, and never longer than the code just sent lives.
    #[arg(long, env = "RESEND_COOLDOWN_SECONDS", default_value_t = 30)]
    pub resend_cooldown_seconds: u64,
    /// Sends of one pending code (the first and the re-sends).
    #[arg(long, env = "MAX_SENDS_PER_CODE", default_value_t = 5)]
    pub max_sends_per_code: u32,
    /// Sends to one phone in any hour (with a human check on, those past
    /// `CAPTCHA_AFTER_SENDS` need a check). The hour's last send keeps its code until the
    /// phone may have another. A login forgets the hour's sends.
    #[arg(long, env = "PHONE_SENDS_PER_HOUR", default_value_t = 5)]
    pub phone_sends_per_hour: u32,
    /// Send and verify requests from one client address per minute; 0 turns it off.
    #[arg(long, env = "IP_REQUESTS_PER_MINUTE", default_value_t = 60)]
    pub ip_requests_per_minute: u32,
    /// Send and verify requests from one client network (an IPv4 /24, an IPv6 /48) per
    /// minute, over all its addresses; 0 turns it off.
    #[arg(long, env = "IP_NETWORK_REQUESTS_PER_MINUTE", default_value_t = 600)]
    pub ip_network_requests_per_minute: u32,
    /// Sends accepted per minute over all phones and api replicas (a budget against
    /// toll fraud); new codes leave a tenth of it to re-sends. 0 turns it off.
    #[arg(long, env = "SENDS_PER_MINUTE", default_value_t = 0)]
    pub sends_per_minute: u32,
    /// Calling codes codes may be sent to, comma-separated (e.g. `91,44`); empty
    /// allows every country.
    #[arg(long, env = "ALLOWED_COUNTRY_CODES", default_value = "")]
    pub allowed_country_codes: String,
    /// The kinds of number codes may be sent to, by the numbering plans (mobile,
    /// fixed_line, fixed_line_or_mobile, toll_free, premium_rate, shared_cost,
    /// personal_number, voip, pager, uan, voicemail, other), or `all`.
    #[arg(
        long,
        env = "ALLOWED_NUMBER_TYPES",
        default_value = "mobile,fixed_line_or_mobile"
    )]
    pub allowed_number_types: String,
    /// Sends per minute to each country, `code=sends` comma-separated, `*` for every
    /// country not listed (`91=600,*=60`); empty: none.
    #[arg(long, env = "COUNTRY_SENDS_PER_MINUTE", default_value = "")]
    pub country_sends_per_minute: String,
    /// The secret in the path WATI posts its receipts to
    /// (`/api/webhooks/wati/<secret>`), at least 32 characters; receipts are off
    /// without it.
    #[arg(long, env = "WATI_WEBHOOK_SECRET", hide_env_values = true)]
    pub wati_webhook_secret: Option<String>,
    /// The language codes go out in by the phone's calling code, where the app gives
    /// none (or one without a template): `55=pt_BR,91=hi`.
    #[arg(long, env = "COUNTRY_LOCALES", default_value = "")]
    pub country_locales: String,
    /// Review phones with fixed codes, `phone=code,…` (10 to 15 digits): app-store
    /// reviewers and an app's own tests log in with them; no message is sent and no
    /// budget spent. Each is a standing way in for whoever knows its code.
    #[arg(long, env = "TEST_PHONES", default_value = "", hide_env_values = true)]
    pub test_phones: String,
    /// Proxies (comma-separated networks, e.g. `10.0.0.0/8,fd00::/8`) whose
    /// `X-Forwarded-For` names the client; from any other peer it is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    #[command(flatten)]
    pub human_check: crate::human_check::HumanCheckArgs,
}

/// Abuse limits, all enforced in Redis so they hold across api replicas.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The least gap between two sends to one phone.
    pub resend_cooldown: Duration,
    pub max_sends_per_code: u32,
    pub phone_sends_per_hour: u32,
    pub ip_requests_per_minute: u32,
    /// `IP_NETWORK_REQUESTS_PER_MINUTE`; 0 is off.
    pub ip_network_requests_per_minute: u32,
    /// 0 is off.
    pub sends_per_minute: u32,
    pub trusted_proxies: TrustedProxies,
}

/// The api's checked settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub common: CommonConfig,
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub http_max_connections: usize,
    /// `HTTP_MAX_CONNECTIONS_PER_CLIENT`; 0 is off.
    pub http_max_connections_per_client: usize,
    /// The public listener's waits (`HTTP_IDLE_TIMEOUT_SECONDS` for an idle connection).
    pub http_timeouts: otp_shared::http::Timeouts,
    /// The metrics listener's waits: always [`otp_shared::http::TIMEOUTS`], but a field,
    /// so that tests can shorten them as they do the public listener's.
    pub metrics_timeouts: otp_shared::http::Timeouts,
    pub otp_max_attempts: u32,
    pub wrong_guesses_per_phone: u32,
    pub otp_length: u32,
    /// The keys access tokens are signed and checked with.
    pub token_keys: KeySet,
    /// An access token's life.
    pub jwt_ttl: Duration,
    pub login_page: bool,
    /// Where the login page links for the sandbox's inbox (development only).
    pub login_page_inbox_url: Option<String>,
    /// A refresh session's life.
    pub refresh_ttl: Duration,
    pub database_url: String,
    pub jwt_issuer: String,
    pub limits: Limits,
    /// The webhook path's secret; `None` turns receipts off.
    pub wati_webhook_secret: Option<SecretString>,
    pub allowed_countries: AllowedCountries,
    /// `ALLOWED_NUMBER_TYPES`.
    pub allowed_number_types: crate::phone::AllowedNumberTypes,
    /// `COUNTRY_SENDS_PER_MINUTE`.
    pub country_budgets: crate::country_budget::CountryBudgets,
    /// `COUNTRY_LOCALES`: the language of a country's codes, unless the app names one.
    pub country_locales: ByCountry<Locale>,
    /// `TEST_PHONES`: phones that log in with a fixed code and get no message.
    pub review_phones: ReviewPhones,
    /// The human check (`CAPTCHA_PROVIDER`), when it is on.
    pub human_check: Option<crate::human_check::HumanCheckSettings>,
}

impl ApiArgs {
    pub fn validate(self) -> Result<ApiConfig, ConfigError> {
        let common = self.common.validate()?;
        // Refuse budgets that could not deliver a single new code before it expires
        // (new codes are admitted as if they lived the re-send reserve less).
        let reserve = otp_shared::redis::admission::reserve_for(
            common.otp_ttl,
            Duration::from_secs(self.resend_cooldown_seconds),
        );
        common
            .budgets
            .capacity(common.otp_ttl.saturating_sub(reserve))
            .check()?;
        otp_shared::config::real_url_password("DATABASE_URL", &self.database_url, common.dev_mode)?;
        let token_keys = match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => KeySet::hs256(&real_secret(
                "JWT_SECRET",
                required_secret("JWT_SECRET", self.jwt_secret)?,
                common.dev_mode,
            )?),
            asymmetric => {
                let files = self
                    .jwt_private_key_file
                    .filter(|f| !f.trim().is_empty())
                    .ok_or(ConfigError::Missing("JWT_PRIVATE_KEY_FILE"))?;
                KeySet::from_pem_files(asymmetric, &files).map_err(|e| ConfigError::Unusable {
                    name: "JWT_PRIVATE_KEY_FILE",
                    detail: e.to_string(),
                })?
            }
        };
        if !(4..=10).contains(&self.otp_length) {
            return Err(ConfigError::Invalid {
                name: "OTP_LENGTH",
                problem: "must be between 4 and 10",
            });
        }
        for (name, value) in [
            ("OTP_MAX_ATTEMPTS", self.otp_max_attempts),
            ("MAX_SENDS_PER_CODE", self.max_sends_per_code),
            ("PHONE_SENDS_PER_HOUR", self.phone_sends_per_hour),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    problem: "must be at least 1",
                });
            }
        }
        let wati_webhook_secret = match self.wati_webhook_secret.filter(|s| !s.is_empty()) {
            Some(secret) if secret.chars().count() < 32 => {
                return Err(ConfigError::Invalid {
                    name: "WATI_WEBHOOK_SECRET",
                    problem: "must be at least 32 characters",
                });
            }
            Some(secret)
                if !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)) =>
            {
                return Err(ConfigError::Invalid {
                    name: "WATI_WEBHOOK_SECRET",
                    problem: "must be letters, digits, '-', '_', '.' or '~' (it is a URL path segment)",
                });
            }
            Some(secret) => Some(real_secret(
                "WATI_WEBHOOK_SECRET",
                SecretString::from(secret),
                common.dev_mode,
            )?),
            None => None,
        };
        for (name, value) in [
            ("JWT_TTL_SECONDS", self.jwt_ttl_seconds),
            ("REFRESH_TTL_SECONDS", self.refresh_ttl_seconds),
            ("HTTP_MAX_CONNECTIONS", self.http_max_connections as u64),
            ("HTTP_IDLE_TIMEOUT_SECONDS", self.http_idle_timeout_seconds),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    problem: "must be at least 1",
                });
            }
        }
        let human_check = self.human_check.validate(common.dev_mode)?;
        if human_check
            .as_ref()
            .is_some_and(|check| check.after_sends >= self.phone_sends_per_hour)
        {
            return Err(ConfigError::Invalid {
                name: "CAPTCHA_AFTER_SENDS",
                problem: "must be less than PHONE_SENDS_PER_HOUR (or the check is never asked for)",
            });
        }
        Ok(ApiConfig {
            human_check,
            common,
            api_addr: self.api_addr,
            metrics_addr: self.metrics_addr,
            http_max_connections: self.http_max_connections,
            http_max_connections_per_client: self.http_max_connections_per_client,
            http_timeouts: otp_shared::http::Timeouts {
                idle: Duration::from_secs(self.http_idle_timeout_seconds),
                ..otp_shared::http::TIMEOUTS
            },
            metrics_timeouts: otp_shared::http::TIMEOUTS,
            otp_max_attempts: self.otp_max_attempts,
            wrong_guesses_per_phone: self.wrong_guesses_per_phone,
            otp_length: self.otp_length,
            token_keys,
            jwt_ttl: Duration::from_secs(self.jwt_ttl_seconds),
            login_page: self.login_page,
            login_page_inbox_url: match self.login_page_inbox_url.filter(|u| !u.is_empty()) {
                Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(ConfigError::Invalid {
                        name: "LOGIN_PAGE_INBOX_URL",
                        problem: "must be an http:// or https:// URL",
                    });
                }
                url => url,
            },
            refresh_ttl: Duration::from_secs(self.refresh_ttl_seconds),
            database_url: self.database_url,
            jwt_issuer: self.jwt_issuer,
            limits: Limits {
                resend_cooldown: Duration::from_secs(self.resend_cooldown_seconds),
                max_sends_per_code: self.max_sends_per_code,
                phone_sends_per_hour: self.phone_sends_per_hour,
                ip_requests_per_minute: self.ip_requests_per_minute,
                ip_network_requests_per_minute: self.ip_network_requests_per_minute,
                sends_per_minute: self.sends_per_minute,
                trusted_proxies: self.trusted_proxies.parse().map_err(|_| {
                    ConfigError::Invalid {
                        name: "TRUSTED_PROXIES",
                        problem: "must be a comma-separated list of networks such as 10.0.0.0/8",
                    }
                })?,
            },
            wati_webhook_secret,
            allowed_countries: self.allowed_country_codes.parse().map_err(|_| {
                ConfigError::Invalid {
                    name: "ALLOWED_COUNTRY_CODES",
                    problem: "must be calling codes separated by commas, such as 91,44",
                }
            })?,
            allowed_number_types: self.allowed_number_types.parse().map_err(|_| {
                ConfigError::Invalid {
                    name: "ALLOWED_NUMBER_TYPES",
                    problem: "must be kinds of number separated by commas, such as mobile,fixed_line_or_mobile (or all)",
                }
            })?,
            country_budgets: self.country_sends_per_minute.parse().map_err(|_| {
                ConfigError::Invalid {
                    name: "COUNTRY_SENDS_PER_MINUTE",
                    problem: "must be calling code=sends pairs separated by commas, * for the others, such as 91=600,*=60",
                }
            })?,
            country_locales: ByCountry::parse(&self.country_locales, Locale::parse).map_err(
                |_| ConfigError::Invalid {
                    name: "COUNTRY_LOCALES",
                    problem: "must be calling code=locale pairs separated by commas, such as 55=pt_BR,91=hi",
                },
            )?,
            review_phones: self
                .test_phones
                .parse()
                .map_err(|e: crate::review_phones::InvalidReviewPhone| ConfigError::Unusable {
                    name: "TEST_PHONES",
                    detail: e.to_string(),
                })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn parse(extra: &[&str]) -> Result<ApiConfig, ConfigError> {
        let mut args = vec!["api", "--otp-secret", SECRET];
        args.extend_from_slice(extra);
        ApiArgs::try_parse_from(args)
            .expect("arguments parse")
            .validate()
    }

    #[test]
    fn the_jwt_secret_is_required_and_long() {
        assert_eq!(parse(&[]).err(), Some(ConfigError::Missing("JWT_SECRET")));
        assert_eq!(
            parse(&["--jwt-secret", "short"]).err(),
            Some(ConfigError::SecretTooShort("JWT_SECRET"))
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = parse(&["--jwt-secret", SECRET]).expect("valid");
        assert_eq!(config.otp_length, 6);
        assert_eq!(config.otp_max_attempts, 3);
        assert_eq!(config.common.otp_ttl, Duration::from_secs(300));
        assert_eq!(config.jwt_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_ttl, Duration::from_secs(2_592_000));
        assert!(config.database_url.ends_with("/otp_gateway"));
        assert_eq!(config.limits.resend_cooldown, Duration::from_secs(30));
        assert_eq!(config.limits.max_sends_per_code, 5);
        assert_eq!(config.limits.phone_sends_per_hour, 5);
        assert_eq!(config.limits.ip_requests_per_minute, 60);
        assert_eq!(config.limits.trusted_proxies, TrustedProxies::default());
        assert_eq!(config.api_addr.port(), 8080);
        assert_eq!(config.metrics_addr.port(), 9100);
        assert!(
            config.metrics_addr.ip().is_loopback(),
            "metrics stay on this machine"
        );
    }

    #[test]
    fn placeholder_secrets_start_only_in_dev_mode() {
        let placeholder = "change-me-jwt-secret-at-least-32-bytes";
        assert!(matches!(
            parse(&["--jwt-secret", placeholder]),
            Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                ..
            })
        ));
        assert!(parse(&["--jwt-secret", placeholder, "--dev-mode", "true"]).is_ok());
        let webhook = "change-me-webhook-secret-at-least-32-chars";
        assert!(matches!(
            parse(&["--jwt-secret", SECRET, "--wati-webhook-secret", webhook]),
            Err(ConfigError::Invalid {
                name: "WATI_WEBHOOK_SECRET",
                ..
            })
        ));
    }

    #[test]
    fn a_webhook_secret_is_long_and_fits_a_path() {
        let with = |secret: &str| parse(&["--jwt-secret", SECRET, "--wati-webhook-secret", secret]);
        assert!(with(&"a".repeat(32)).is_ok_and(|c| c.wati_webhook_secret.is_some()));
        assert!(matches!(
            with(&"a".repeat(31)),
            Err(ConfigError::Invalid {
                name: "WATI_WEBHOOK_SECRET",
                ..
            })
        ));
        assert!(matches!(
            with(&format!("{}/x", "a".repeat(32))),
            Err(ConfigError::Invalid {
                name: "WATI_WEBHOOK_SECRET",
                ..
            })
        ));
        assert!(parse(&["--jwt-secret", SECRET]).is_ok_and(|c| c.wati_webhook_secret.is_none()));
    }

    #[test]
    fn the_code_length_is_bounded() {
        for bad in ["3", "11"] {
            assert!(matches!(
                parse(&["--jwt-secret", SECRET, "--otp-length", bad]),
                Err(ConfigError::Invalid {
                    name: "OTP_LENGTH",
                    ..
                })
            ));
        }
    }

    #[test]
    fn eddsa_and_es256_take_key_files_instead_of_the_secret() {
        use crate::token::keys::generate_pem;
        assert_eq!(
            parse(&["--jwt-algorithm", "EdDSA"]).err(),
            Some(ConfigError::Missing("JWT_PRIVATE_KEY_FILE"))
        );
        let dir = std::env::temp_dir().join(format!("otp-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, algorithm) in [
            ("EdDSA", JwtAlgorithm::EdDsa),
            ("ES256", JwtAlgorithm::Es256),
        ] {
            let file = dir.join(format!("{name}.pem"));
            std::fs::write(&file, generate_pem(algorithm).expect("key")).expect("write");
            let file = file.display().to_string();
            let config = parse(&["--jwt-algorithm", name, "--jwt-private-key-file", &file])
                .expect("a key file and no JWT_SECRET");
            assert_eq!(config.token_keys.jwks().keys.len(), 1);
        }
        let missing = dir.join("nowhere.pem").display().to_string();
        match parse(&[
            "--jwt-algorithm",
            "EdDSA",
            "--jwt-private-key-file",
            &missing,
        ]) {
            Err(
                error @ ConfigError::Unusable {
                    name: "JWT_PRIVATE_KEY_FILE",
                    ..
                },
            ) => {
                assert!(
                    error
                        .to_string()
                        .starts_with(&format!("JWT_PRIVATE_KEY_FILE {missing}: "))
                );
            }
            other => panic!("expected the missing file to be named, got {other:?}"),
        }
        let es256_file = dir.join("ES256.pem").display().to_string();
        assert!(matches!(
            parse(&[
                "--jwt-algorithm",
                "EdDSA",
                "--jwt-private-key-file",
                &es256_file
            ]),
            Err(ConfigError::Unusable { .. })
        ));
        assert!(ApiArgs::try_parse_from(["api", "--jwt-algorithm", "RS256"]).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_human_check_must_come_before_the_hours_cap() {
        let with = |after: &str| {
            parse(&[
                "--jwt-secret",
                SECRET,
                "--captcha-provider",
                "turnstile",
                "--captcha-site-key",
                "site",
                "--captcha-secret",
                "secret-of-ours",
                "--captcha-after-sends",
                after,
            ])
        };
        assert!(with("4").is_ok_and(|c| c.human_check.is_some()));
        assert!(matches!(
            with("5"),
            Err(ConfigError::Invalid {
                name: "CAPTCHA_AFTER_SENDS",
                ..
            })
        ));
    }

    #[test]
    fn the_login_page_is_off_unless_asked_for_and_its_inbox_link_is_a_web_address() {
        let config = parse(&["--jwt-secret", SECRET]).expect("valid");
        assert!(!config.login_page && config.login_page_inbox_url.is_none());
        assert!(
            parse(&["--jwt-secret", SECRET, "--login-page", "true"]).is_ok_and(|c| c.login_page)
        );
        assert_eq!(
            parse(&[
                "--jwt-secret",
                SECRET,
                "--login-page-inbox-url",
                "javascript:alert(1)"
            ])
            .err(),
            Some(ConfigError::Invalid {
                name: "LOGIN_PAGE_INBOX_URL",
                problem: "must be an http:// or https:// URL",
            })
        );
    }
}
