//! The worker's settings, read once at start from flags or environment and checked.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use otp_shared::amqp::DeadLetterBounds;
use otp_shared::budget::WatiApiVersion;
use otp_shared::config::{CommonArgs, CommonConfig, ConfigError, required};
use secrecy::SecretString;

use crate::sms::text::SmsText;
use crate::sms::twilio::{Sender, TwilioConfig};
use crate::templates::Templates;
use otp_shared::sms::SmsSettings;

/// Jobs in flight per worker in v1 mode, where each call carries one.
const V1_CONCURRENCY: u16 = 64;

/// WhatsApp OTP gateway: delivery worker.
#[derive(Parser, Debug)]
#[command(name = "worker", version, about)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// WATI API base URL: `https://live-mt-server.wati.io` for v3, with the tenant id
    /// (`…/12345`) for v1; may carry a path prefix.
    #[arg(long, env = "WATI_BASE_URL")]
    pub wati_base_url: Option<String>,
    /// WATI API key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "WATI_API_KEY", hide_env_values = true)]
    pub wati_api_key: Option<String>,
    /// The default template: an approved AUTHENTICATION template whose one parameter is
    /// the code.
    #[arg(long, env = "WATI_TEMPLATE_NAME", default_value = "login_otp")]
    pub wati_template_name: String,
    /// The name of that parameter as WATI lists it: `1` for Meta's fixed authentication
    /// body `{{1}} is your verification code.`
    #[arg(long, env = "WATI_TEMPLATE_PARAM", default_value = "1")]
    pub wati_template_param: String,
    /// More templates, one per language, `locale=template` comma-separated:
    /// `pt_BR=login_otp_pt,hi=login_otp_hi`.
    #[arg(long, env = "WATI_LOCALE_TEMPLATES", default_value = "")]
    pub wati_locale_templates: String,
    /// The template check at start: `on` refuses to start when a configured template is
    /// missing, not APPROVED or lacks WATI_TEMPLATE_PARAM; `warn` logs it and starts;
    /// `off` skips it (for keys without the template-read scope).
    #[arg(long, env = "WATI_PREFLIGHT", value_enum, default_value = "on")]
    pub wati_preflight: Preflight,
    /// How often the worker checks its templates again (Meta pauses and disables
    /// templates), in seconds; 0 checks only at start.
    #[arg(long, env = "WATI_TEMPLATE_CHECK_SECONDS", default_value_t = 600)]
    pub wati_template_check_seconds: u64,
    /// Longest wait for one WATI call, in milliseconds.
    #[arg(long, env = "WATI_TIMEOUT_MS", default_value_t = 10_000)]
    pub wati_timeout_ms: u64,
    /// Address of `/metrics` and `/healthz` for Prometheus; this machine only unless
    /// set (a container sets `0.0.0.0:9101` for its network).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
    /// Jobs one worker holds at once (its RabbitMQ prefetch), from which its calls are
    /// filled. Default: twice WATI_BATCH_MAX for v3 (a full call forms while another is
    /// in the air), 64 for v1. For v3 it must be at least WATI_BATCH_MAX.
    #[arg(long, env = "WORKER_CONCURRENCY")]
    pub worker_concurrency: Option<u16>,
    /// First retry delay after a transient WATI failure, in milliseconds.
    #[arg(long, env = "RETRY_BASE_DELAY_MS", default_value_t = 500)]
    pub retry_base_delay_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "RETRY_MAX_DELAY_MS", default_value_t = 30_000)]
    pub retry_max_delay_ms: u64,
    /// After SIGTERM, how long in-flight jobs may take before the worker exits anyway
    /// (unfinished jobs go back to the queue).
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Most jobs the dead-letter queue keeps; past it, the oldest are dropped.
    #[arg(long, env = "DEAD_LETTER_MAX_LENGTH", default_value_t = 100_000)]
    pub dead_letter_max_length: u32,
    /// How long a dead letter is kept, in seconds (each holds a phone number).
    #[arg(long, env = "DEAD_LETTER_TTL_SECONDS", default_value_t = 604_800)]
    pub dead_letter_ttl_seconds: u64,
    #[command(flatten)]
    pub twilio: TwilioArgs,
}

/// How the worker sends SMS (with `SMS_PROVIDER=twilio`).
#[derive(clap::Args, Clone, Debug)]
pub struct TwilioArgs {
    /// Twilio's REST host (a sandbox in tests).
    #[arg(
        long,
        env = "TWILIO_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_base_url: String,
    /// The account sid (`AC…`): the user of the Messages API's basic auth.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// A sender number (`+1…`) or a Messaging Service sid (`MG…`).
    #[arg(long, env = "TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// A WhatsApp send with no delivered receipt this long after WATI accepted it goes
    /// by SMS (receipts must be on); 0 sends by SMS only on a failure.
    #[arg(long, env = "FALLBACK_AFTER_SECONDS", default_value_t = 30)]
    pub fallback_after_seconds: u64,
    /// The SMS body: `{code}` and `{minutes}` are filled in.
    #[arg(
        long,
        env = "SMS_TEXT",
        default_value = "{code} is your verification code. Do not share it."
    )]
    pub sms_text: String,
    /// Adds the origin-bound last line `@<domain> #<code>` (WebOTP, iOS and Android
    /// autofill offer the code on that site only).
    #[arg(long, env = "SMS_WEBOTP_DOMAIN")]
    pub sms_webotp_domain: Option<String>,
}

/// Longest wait for one call to Twilio.
const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the worker sends SMS, when SMS is on.
#[derive(Clone, Debug)]
pub struct SmsConfig {
    /// What both processes know: countries, budget, token, callback URL.
    pub settings: SmsSettings,
    pub twilio: TwilioConfig,
    pub text: SmsText,
    /// `FALLBACK_AFTER_SECONDS`; `None` falls back only on a failure.
    pub fallback_after: Option<Duration>,
}

impl TwilioArgs {
    fn validate(
        self,
        settings: Option<SmsSettings>,
        dev_mode: bool,
    ) -> Result<Option<SmsConfig>, ConfigError> {
        let Some(settings) = settings else {
            return Ok(None);
        };
        let account_sid = required("TWILIO_ACCOUNT_SID", self.twilio_account_sid)?;
        if !(account_sid.starts_with("AC") && account_sid.len() == 34) {
            return Err(ConfigError::Invalid {
                name: "TWILIO_ACCOUNT_SID",
                problem: "must be an account sid: AC and 32 hex digits",
            });
        }
        let from = required("TWILIO_FROM", self.twilio_from)?;
        let from = Sender::parse(&from).ok_or(ConfigError::Invalid {
            name: "TWILIO_FROM",
            problem: "must be a number such as +14155552671 or a Messaging Service sid (MG and 32 hex digits)",
        })?;
        let base_url = self.twilio_base_url.trim_end_matches('/').to_owned();
        let scheme_ok = match reqwest::Url::parse(&base_url) {
            Ok(url) if url.scheme() == "https" => true,
            // Codes travel in the clear over http: only to a sandbox.
            Ok(url) if url.scheme() == "http" => dev_mode || is_loopback(&url),
            _ => false,
        };
        if !scheme_ok {
            return Err(ConfigError::Invalid {
                name: "TWILIO_BASE_URL",
                problem: "must be https (http only to this machine, or with DEV_MODE=true)",
            });
        }
        Ok(Some(SmsConfig {
            twilio: TwilioConfig {
                base_url,
                account_sid,
                auth_token: settings.auth_token.clone(),
                from,
                status_callback_url: settings.status_callback_url.clone(),
                timeout: TWILIO_TIMEOUT,
            },
            text: SmsText::new(&self.sms_text, self.sms_webotp_domain.as_deref())?,
            fallback_after: (self.fallback_after_seconds > 0)
                .then(|| Duration::from_secs(self.fallback_after_seconds)),
            settings,
        }))
    }
}

/// What the worker can do besides delivering.
#[derive(clap::Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Check the configured templates against WATI's template list, print what was
    /// found for each, and exit 0 when every one can carry the code (1 otherwise).
    /// Needs only the WATI settings.
    CheckWati,
}

/// Whether the worker checks its templates at start (`WATI_PREFLIGHT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preflight {
    /// Refuse to start when a template cannot carry the code.
    On,
    /// Log what is wrong and start.
    Warn,
    /// Do not read the template list.
    Off,
}

/// How to reach WATI.
#[derive(Clone, Debug)]
pub struct WatiConfig {
    pub base_url: String,
    pub api_key: SecretString,
    /// The templates codes go out in, by language, and the parameter that carries it.
    pub templates: Templates,
    /// The numbers whose template lists the check reads: every number of the pool
    /// (`None`: WATI's default channel), since WATI lists templates per number.
    pub channel_numbers: Vec<Option<String>>,
    pub timeout: Duration,
    pub api_version: WatiApiVersion,
    pub preflight: Preflight,
    /// How often the templates are checked again; `None` only at start.
    pub recheck_every: Option<Duration>,
}

/// Delays between attempts after a transient failure.
#[derive(Clone, Debug)]
pub struct RetryConfig {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The worker's checked settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub common: CommonConfig,
    pub wati: WatiConfig,
    pub retry: RetryConfig,
    pub metrics_addr: SocketAddr,
    pub concurrency: u16,
    pub shutdown_grace: Duration,
    pub dead_letters: DeadLetterBounds,
    /// SMS (`SMS_PROVIDER`), when it is on.
    pub sms: Option<SmsConfig>,
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or ::1.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl WorkerArgs {
    /// The WATI settings alone, checked: what `check-wati` needs.
    pub fn wati(&self) -> Result<WatiConfig, ConfigError> {
        let base_url = required("WATI_BASE_URL", self.wati_base_url.clone())?;
        let parsed = reqwest::Url::parse(&base_url).map_err(|_| ConfigError::Invalid {
            name: "WATI_BASE_URL",
            problem: "is not a URL",
        })?;
        match parsed.scheme() {
            "https" => {}
            // Codes travel in the clear over http: only to this machine (a sandbox), or
            // to a sandbox container in development.
            "http" if self.common.dev_mode || is_loopback(&parsed) => {}
            "http" => {
                return Err(ConfigError::Invalid {
                    name: "WATI_BASE_URL",
                    problem: "must be https (http only to this machine, or with DEV_MODE=true)",
                });
            }
            _ => {
                return Err(ConfigError::Invalid {
                    name: "WATI_BASE_URL",
                    problem: "must be http or https",
                });
            }
        }
        let api_key = required("WATI_API_KEY", self.wati_api_key.clone())?;
        let templates = Templates::new(
            &self.wati_template_name,
            &self.wati_template_param,
            &self.wati_locale_templates,
        )?;
        Ok(WatiConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: SecretString::from(api_key),
            templates,
            channel_numbers: self
                .common
                .budgets
                .senders()?
                .iter()
                .map(|s| s.number.clone())
                .collect(),
            timeout: Duration::from_millis(self.wati_timeout_ms.max(1)),
            api_version: self.common.budgets.wati_api_version,
            preflight: self.wati_preflight,
            recheck_every: (self.wati_template_check_seconds > 0)
                .then(|| Duration::from_secs(self.wati_template_check_seconds)),
        })
    }

    pub fn validate(self) -> Result<WorkerConfig, ConfigError> {
        let common = self.common.clone().validate()?;
        let wati = self.wati()?;
        for (name, value) in [
            (
                "DEAD_LETTER_MAX_LENGTH",
                u64::from(self.dead_letter_max_length),
            ),
            ("DEAD_LETTER_TTL_SECONDS", self.dead_letter_ttl_seconds),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    problem: "must be at least 1",
                });
            }
        }
        if self.dead_letter_ttl_seconds > u64::from(u32::MAX) / 1000 {
            return Err(ConfigError::Invalid {
                name: "DEAD_LETTER_TTL_SECONDS",
                problem: "must be at most 4294967 (RabbitMQ's limit, about 49 days)",
            });
        }
        let budgets = common.budgets.clone();
        let concurrency = match (self.worker_concurrency, budgets.api_version) {
            (Some(0), _) => {
                return Err(ConfigError::Invalid {
                    name: "WORKER_CONCURRENCY",
                    problem: "must be at least 1",
                });
            }
            (Some(n), WatiApiVersion::V3) if u32::from(n) < budgets.recipients_per_call => {
                return Err(ConfigError::Invalid {
                    name: "WORKER_CONCURRENCY",
                    problem: "must be at least WATI_BATCH_MAX: a call carries only jobs its worker holds",
                });
            }
            (Some(n), _) => n,
            (None, WatiApiVersion::V1) => V1_CONCURRENCY,
            (None, WatiApiVersion::V3) => {
                u16::try_from(budgets.recipients_per_call * 2).unwrap_or(u16::MAX)
            }
        };
        if self.retry_base_delay_ms == 0 || self.retry_max_delay_ms < self.retry_base_delay_ms {
            return Err(ConfigError::Invalid {
                name: "RETRY_MAX_DELAY_MS",
                problem: "must be at least RETRY_BASE_DELAY_MS, which must be at least 1",
            });
        }
        let sms = self
            .twilio
            .clone()
            .validate(common.sms.clone(), common.dev_mode)?;
        // v1's receipts name no send: no timer would ever find its send delivered.
        if budgets.api_version == WatiApiVersion::V1
            && sms.as_ref().is_some_and(|sms| sms.fallback_after.is_some())
        {
            return Err(ConfigError::Invalid {
                name: "FALLBACK_AFTER_SECONDS",
                problem: "must be 0 with WATI_API_VERSION=v1: its receipts name no send, so every code would also go by SMS",
            });
        }
        Ok(WorkerConfig {
            common,
            wati,
            retry: RetryConfig {
                base_delay: Duration::from_millis(self.retry_base_delay_ms),
                max_delay: Duration::from_millis(self.retry_max_delay_ms),
            },
            metrics_addr: self.metrics_addr,
            concurrency,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            dead_letters: DeadLetterBounds {
                max_length: self.dead_letter_max_length,
                ttl: Duration::from_secs(self.dead_letter_ttl_seconds),
            },
            sms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<WorkerConfig, ConfigError> {
        let mut args = vec!["worker", "--otp-secret", "0123456789abcdef0123456789abcdef"];
        args.extend_from_slice(extra);
        WorkerArgs::try_parse_from(args)
            .expect("arguments parse")
            .validate()
    }

    #[test]
    fn wati_settings_are_required_and_named() {
        assert_eq!(
            parse(&[]).err().map(|e| e.to_string()).as_deref(),
            Some("WATI_BASE_URL not configured")
        );
        assert_eq!(
            parse(&["--wati-base-url", "https://wati.test/123"])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("WATI_API_KEY not configured")
        );
    }

    #[test]
    fn the_base_url_keeps_its_path_prefix() {
        let config = parse(&[
            "--wati-base-url",
            "https://live-mt-server.wati.io/12345/",
            "--wati-api-key",
            "k",
        ])
        .expect("valid");
        assert_eq!(config.wati.base_url, "https://live-mt-server.wati.io/12345");
        assert_eq!(config.wati.templates.default_name(), "login_otp");
        assert_eq!(config.wati.templates.param(), "1");
        assert_eq!(config.wati.preflight, Preflight::On);
        assert_eq!(config.metrics_addr.port(), 9101);
        assert!(
            config.metrics_addr.ip().is_loopback(),
            "metrics stay on this machine"
        );
    }

    #[test]
    fn codes_go_over_plain_http_only_to_this_machine_or_in_dev_mode() {
        let with = |url: &str, dev: &str| {
            parse(&[
                "--wati-base-url",
                url,
                "--wati-api-key",
                "k",
                "--dev-mode",
                dev,
            ])
        };
        for local in [
            "http://127.0.0.1:8090",
            "http://localhost:8090/1",
            "http://[::1]:8090",
        ] {
            assert!(with(local, "false").is_ok(), "{local}");
        }
        assert!(matches!(
            with("http://wati.example:8090", "false"),
            Err(ConfigError::Invalid {
                name: "WATI_BASE_URL",
                ..
            })
        ));
        assert!(with("http://wati-sandbox:8090", "true").is_ok());
        assert!(with("https://live-mt-server.wati.io", "false").is_ok());
        assert!(with("ftp://wati.example", "true").is_err());
    }

    #[test]
    fn concurrency_follows_the_batch_size_unless_set() {
        let base = [
            "--wati-base-url",
            "https://wati.test",
            "--wati-api-key",
            "k",
        ];
        let v3 = parse(&base).expect("valid");
        assert_eq!(v3.wati.api_version, WatiApiVersion::V3);
        assert_eq!(v3.concurrency, 2000);
        let mut v1_args = base.to_vec();
        v1_args.extend(["--wati-api-version", "v1"]);
        assert_eq!(parse(&v1_args).expect("valid").concurrency, 64);
        let mut small = base.to_vec();
        small.extend(["--wati-batch-max", "10", "--worker-concurrency", "9"]);
        assert_eq!(
            parse(&small).err().map(|e| e.to_string()).as_deref(),
            Some(
                "WORKER_CONCURRENCY must be at least WATI_BATCH_MAX: a call carries only jobs its worker holds"
            )
        );
    }

    /// The WATI settings every test needs, and SMS on with `extra`.
    fn with_sms(extra: &[&str]) -> Result<WorkerConfig, ConfigError> {
        let mut args = vec![
            "--wati-base-url",
            "https://live-mt-server.wati.io",
            "--wati-api-key",
            "key",
            "--sms-provider",
            "twilio",
            "--twilio-auth-token",
            "0123456789abcdef0123456789abcdef",
        ];
        args.extend_from_slice(extra);
        parse(&args)
    }

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn sms_needs_an_account_a_sender_and_https() {
        assert_eq!(
            with_sms(&["--twilio-from", "+14155552671"]).err(),
            Some(ConfigError::Missing("TWILIO_ACCOUNT_SID"))
        );
        assert_eq!(
            with_sms(&["--twilio-account-sid", SID]).err(),
            Some(ConfigError::Missing("TWILIO_FROM"))
        );
        let named = |extra: &[&str]| with_sms(extra).err().map(|e| e.to_string());
        let bad_sid = named(&[
            "--twilio-account-sid",
            "AC123",
            "--twilio-from",
            "+14155552671",
        ]);
        assert!(bad_sid.is_some_and(|e| e.starts_with("TWILIO_ACCOUNT_SID")));
        let bad_from = named(&["--twilio-account-sid", SID, "--twilio-from", "sender"]);
        assert!(bad_from.is_some_and(|e| e.starts_with("TWILIO_FROM")));
        let remote_http = named(&[
            "--twilio-account-sid",
            SID,
            "--twilio-from",
            "+14155552671",
            "--twilio-base-url",
            "http://api.twilio.com",
        ]);
        assert_eq!(
            remote_http.as_deref(),
            Some(
                "TWILIO_BASE_URL must be https (http only to this machine, or with DEV_MODE=true)"
            )
        );
    }

    #[test]
    fn sms_settings_are_read_as_given() {
        let config = with_sms(&[
            "--twilio-account-sid",
            SID,
            "--twilio-from",
            "+14155552671",
            "--twilio-base-url",
            "http://127.0.0.1:8090/",
            "--fallback-after-seconds",
            "0",
        ])
        .expect("valid");
        let sms = config.sms.expect("SMS on");
        assert_eq!(sms.twilio.base_url, "http://127.0.0.1:8090");
        assert_eq!(sms.fallback_after, None, "0: only on a failure");
        assert_eq!(
            sms.text.body("123456", 5),
            "123456 is your verification code. Do not share it."
        );
        let off = parse(&[
            "--wati-base-url",
            "https://x.example",
            "--wati-api-key",
            "k",
        ])
        .expect("valid");
        assert!(off.sms.is_none());
    }

    #[test]
    fn with_wati_v1_sms_goes_only_on_a_failure() {
        let v1 = |after: &str| {
            with_sms(&[
                "--twilio-account-sid",
                SID,
                "--twilio-from",
                "+14155552671",
                "--wati-api-version",
                "v1",
                "--fallback-after-seconds",
                after,
            ])
        };
        let refused = v1("30").err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.starts_with("FALLBACK_AFTER_SECONDS must be 0")),
            "{refused:?}"
        );
        assert!(v1("0").is_ok());
    }
}
