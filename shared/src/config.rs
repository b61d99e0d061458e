//! Settings both processes read, and the checks that turn a bad value into one line
//! naming the setting.

use secrecy::SecretString;

use crate::budget::{BudgetArgs, Budgets};

/// Settings shared by the api and the worker, flattened into each process's arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Redis server (its value is not shown: it may carry a password).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// RabbitMQ: one node, or several nodes of one cluster, comma-separated; another is
    /// tried when one is down (its value is not shown: it may carry a password).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// `quorum` (replicated, with a delivery limit) or `classic` queues. A queue that
    /// exists as the other type stops the process at start (README: Running clustered).
    #[arg(long, env = "AMQP_QUEUE_TYPE", value_enum, default_value = "quorum")]
    pub amqp_queue_type: crate::amqp::QueueType,
    /// Quorum queues: failed deliveries of one job (its worker died holding it, or
    /// rejected it) before RabbitMQ dead-letters it.
    #[arg(long, env = "AMQP_DELIVERY_LIMIT", default_value_t = 20)]
    pub amqp_delivery_limit: u32,
    /// Lifetime of a code, in seconds.
    #[arg(long, env = "OTP_TTL_SECONDS", default_value_t = 300)]
    pub otp_ttl_seconds: u64,
    /// Namespace of every Redis key.
    #[arg(long, env = "KEY_PREFIX", default_value = "otp")]
    pub key_prefix: String,
    /// Namespace of every RabbitMQ queue.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "otp")]
    pub queue_prefix: String,
    /// Key that keeps codes unreadable at rest and in jobs (at least 32 bytes).
    #[arg(long, env = "OTP_SECRET", hide_env_values = true)]
    pub otp_secret: Option<String>,
    /// Log line format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    /// Development only: accept the repository's placeholder secrets ("change-me…",
    /// "dev-only…") and a plain-HTTP WATI_BASE_URL that is not on this machine (a
    /// sandbox in a container). Never set it where real users log in.
    #[arg(long, env = "DEV_MODE", default_value_t = false, action = clap::ArgAction::Set)]
    pub dev_mode: bool,
    #[command(flatten)]
    pub budgets: BudgetArgs,
    #[command(flatten)]
    pub sms: crate::sms::SmsArgs,
    #[command(flatten)]
    pub events: crate::events::EventsArgs,
}

pub use crate::config_error::{ConfigError, MIN_SECRET_BYTES, MIN_SECRET_DISTINCT_BYTES};

/// Settings shared by both processes, checked.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    pub redis_url: String,
    pub amqp_url: String,
    /// How the queues are declared (`AMQP_QUEUE_TYPE`, `AMQP_DELIVERY_LIMIT`).
    pub queue: crate::amqp::QueueSettings,
    /// A code's life (`OTP_TTL_SECONDS`).
    pub otp_ttl: std::time::Duration,
    pub key_prefix: String,
    pub queue_prefix: String,
    pub otp_secret: SecretString,
    pub log_format: crate::telemetry::LogFormat,
    /// WATI's call limit, Meta's message rate and the batch size.
    pub budgets: Budgets,
    /// `DEV_MODE`: placeholder secrets and plain HTTP to a sandbox are accepted.
    pub dev_mode: bool,
    /// SMS (`SMS_PROVIDER`), when it is on.
    pub sms: Option<crate::sms::SmsSettings>,
    /// Events to the app (`APP_WEBHOOK_URL`), when they are on.
    pub events: Option<crate::events::EventsSettings>,
}

impl CommonArgs {
    pub fn validate(self) -> Result<CommonConfig, ConfigError> {
        if self.otp_ttl_seconds == 0 {
            return Err(ConfigError::Invalid {
                name: "OTP_TTL_SECONDS",
                problem: "must be at least 1",
            });
        }
        for (name, value) in [
            ("KEY_PREFIX", &self.key_prefix),
            ("QUEUE_PREFIX", &self.queue_prefix),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Invalid {
                    name,
                    problem: "must not be empty",
                });
            }
        }
        real_url_password("REDIS_URL", &self.redis_url, self.dev_mode)?;
        real_url_password("AMQP_URL", &self.amqp_url, self.dev_mode)?;
        let amqp_nodes: Vec<&str> = self.amqp_url.split(',').map(str::trim).collect();
        if amqp_nodes.iter().any(|node| node.starts_with("amqps://")) {
            // lapin is built without TLS: such a URL would only fail at each connect.
            return Err(ConfigError::Invalid {
                name: "AMQP_URL",
                problem: "names amqps://, but TLS to RabbitMQ is not built in: use amqp:// on a private network, or a TLS tunnel (stunnel, a service mesh) beside the process",
            });
        }
        if amqp_nodes.iter().any(|node| !node.starts_with("amqp://")) {
            return Err(ConfigError::Invalid {
                name: "AMQP_URL",
                problem: "must be amqp:// URLs, comma-separated",
            });
        }
        if self.amqp_delivery_limit == 0 {
            return Err(ConfigError::Invalid {
                name: "AMQP_DELIVERY_LIMIT",
                problem: "must be at least 1",
            });
        }
        Ok(CommonConfig {
            redis_url: self.redis_url,
            amqp_url: self.amqp_url,
            queue: crate::amqp::QueueSettings {
                queue_type: self.amqp_queue_type,
                delivery_limit: self.amqp_delivery_limit,
            },
            otp_ttl: std::time::Duration::from_secs(self.otp_ttl_seconds),
            key_prefix: self.key_prefix,
            queue_prefix: self.queue_prefix,
            otp_secret: real_secret(
                "OTP_SECRET",
                required_secret("OTP_SECRET", self.otp_secret)?,
                self.dev_mode,
            )?,
            log_format: self.log_format,
            budgets: self.budgets.validate()?,
            sms: self.sms.validate(self.dev_mode)?,
            events: self.events.validate(self.dev_mode)?,
            dev_mode: self.dev_mode,
        })
    }
}

/// A required secret of at least [`MIN_SECRET_BYTES`].
pub fn required_secret(
    name: &'static str,
    value: Option<String>,
) -> Result<SecretString, ConfigError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))?;
    if value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::SecretTooShort(name));
    }
    let distinct = value
        .bytes()
        .collect::<std::collections::BTreeSet<u8>>()
        .len();
    if distinct < MIN_SECRET_DISTINCT_BYTES {
        return Err(ConfigError::SecretTooPlain(name));
    }
    Ok(SecretString::from(value))
}

/// Whether `secret` is one of the placeholders this repository ships (in the compose
/// file, `scripts/dev`, examples): anyone can read those.
fn is_placeholder(secret: &str) -> bool {
    let secret = secret.to_ascii_lowercase();
    secret.contains("change-me") || secret.contains("changeme") || secret.starts_with("dev-only")
}

/// Refuses a placeholder secret unless `dev_mode`.
pub fn real_secret(
    name: &'static str,
    secret: SecretString,
    dev_mode: bool,
) -> Result<SecretString, ConfigError> {
    use secrecy::ExposeSecret;
    if !dev_mode && is_placeholder(secret.expose_secret()) {
        return Err(ConfigError::Invalid {
            name,
            problem: "is a placeholder from the repository: set a secret of your own (or DEV_MODE=true for development)",
        });
    }
    Ok(secret)
}

/// Whether `url` may carry a secret: https, or plain http only where nobody else can
/// read it: to this machine, or in development.
pub fn is_private_url_usable(url: &str, dev_mode: bool) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    url.strip_prefix("http://")
        .is_some_and(|rest| dev_mode || is_this_machine(rest))
}

/// Whether a URL's remainder after `http://` names this machine.
fn is_this_machine(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| {
        authority == *host
            || authority
                .strip_prefix(host)
                .is_some_and(|port| port.starts_with(':'))
    })
}

/// The password in a URL's user part (`scheme://user:password@host`), if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let user_part = rest.split_once('@')?.0;
    user_part.split_once(':').map(|(_, password)| password)
}

/// Refuses a URL (or comma-separated URLs) whose password is one of the repository's
/// placeholders, unless `dev_mode`.
pub fn real_url_password(
    name: &'static str,
    urls: &str,
    dev_mode: bool,
) -> Result<(), ConfigError> {
    let placeholder = urls
        .split(',')
        .filter_map(|url| url_password(url.trim()))
        .any(is_placeholder);
    if placeholder && !dev_mode {
        return Err(ConfigError::Invalid {
            name,
            problem: "carries a placeholder password from the repository: set one of your own (or DEV_MODE=true for development)",
        });
    }
    Ok(())
}

/// A process's arguments from its command line and environment, with its secrets from
/// the environment only: the command line of a process is readable by every user of
/// the machine (`ps`). `secrets` are `(argument id, variable name)` pairs. Exits with
/// clap's usage message on arguments that do not parse, as `Parser::parse` does.
pub fn parse_keeping_secrets_off_the_command_line<A>(
    secrets: &[(&str, &'static str)],
) -> Result<A, ConfigError>
where
    A: clap::CommandFactory + clap::FromArgMatches,
{
    let matches = A::command().get_matches();
    for (id, name) in secrets {
        if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return Err(ConfigError::Invalid {
                name,
                problem: "must come from the environment, not the command line (which `ps` shows)",
            });
        }
    }
    Ok(A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// A required setting that is not a secret.
pub fn required(name: &'static str, value: Option<String>) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_names_itself() {
        assert_eq!(
            required_secret("OTP_SECRET", None).err(),
            Some(ConfigError::Missing("OTP_SECRET"))
        );
        assert_eq!(
            required_secret("OTP_SECRET", Some(String::new())).err(),
            Some(ConfigError::Missing("OTP_SECRET"))
        );
    }

    #[test]
    fn a_long_secret_of_few_characters_is_refused() {
        for plain in ["a".repeat(40), "ab".repeat(20), "0123".repeat(10)] {
            assert_eq!(
                required_secret("JWT_SECRET", Some(plain.clone())).err(),
                Some(ConfigError::SecretTooPlain("JWT_SECRET")),
                "{plain}"
            );
        }
        let random_hex = "9f86d081884c7d659a2feaa0c55ad015";
        assert!(required_secret("JWT_SECRET", Some(random_hex.into())).is_ok());
    }

    #[test]
    fn the_repositorys_placeholder_secrets_need_dev_mode() {
        for placeholder in [
            "change-me-otp-secret-at-least-32-bytes",
            "dev-only-jwt-secret-change-me-0123456789",
            "CHANGEME-0123456789abcdef0123456789abcdef",
        ] {
            let secret = || SecretString::from(placeholder);
            assert!(matches!(
                real_secret("OTP_SECRET", secret(), false),
                Err(ConfigError::Invalid {
                    name: "OTP_SECRET",
                    ..
                })
            ));
            assert!(real_secret("OTP_SECRET", secret(), true).is_ok());
        }
        let real = SecretString::from("0123456789abcdef0123456789abcdef");
        assert!(real_secret("OTP_SECRET", real, false).is_ok());
    }

    #[test]
    fn placeholder_passwords_in_urls_need_dev_mode() {
        let compose = "redis://:change-me-redis-password@redis:6379";
        assert!(matches!(
            real_url_password("REDIS_URL", compose, false),
            Err(ConfigError::Invalid {
                name: "REDIS_URL",
                ..
            })
        ));
        assert!(real_url_password("REDIS_URL", compose, true).is_ok());
        let list = "redis://a:6379,redis://:change-me@b:6379";
        assert!(real_url_password("REDIS_URL", list, false).is_err());
        for fine in [
            "redis://127.0.0.1:6379",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "postgres://otp:s3cr3t-Xy@db/otp",
            "redis://user@host:6379",
        ] {
            assert!(real_url_password("X", fine, false).is_ok(), "{fine}");
        }
    }

    #[test]
    fn amqps_is_refused_at_start_rather_than_at_every_connect() {
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            common: CommonArgs,
        }
        let validate = |url: &str| {
            <Args as clap::Parser>::try_parse_from([
                "otp",
                "--amqp-url",
                url,
                "--otp-secret",
                "0123456789abcdef0123456789abcdef",
            ])
            .expect("arguments")
            .common
            .validate()
        };
        let refused = validate("amqp://otp:s3cr3t-Xy@a:5672/%2f,amqps://otp:s3cr3t-Xy@b:5671/%2f");
        assert!(
            matches!(&refused, Err(ConfigError::Invalid { name: "AMQP_URL", problem }) if problem.contains("TLS")),
            "{refused:?}"
        );
        let fine = validate("amqp://otp:s3cr3t-Xy@a:5672/%2f,amqp://otp:s3cr3t-Xy@b:5672/%2f");
        assert!(fine.is_ok(), "{:?}", fine.err());
        assert!(validate("http://a").is_err());
    }

    #[test]
    fn a_short_secret_is_refused_with_the_spec_text() {
        let err = required_secret("JWT_SECRET", Some("x".repeat(31))).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("JWT_SECRET must be at least 32 bytes")
        );
        assert!(required_secret("JWT_SECRET", Some("0123456789abcdef".repeat(2))).is_ok());
    }
}
