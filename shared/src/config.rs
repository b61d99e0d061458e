//! Settings both processes read, and the checks that turn a bad value into one line
//! naming the setting.

use secrecy::SecretString;

use crate::budget::{BudgetArgs, Budgets};

/// Shortest accepted key for `JWT_SECRET` and `OTP_SECRET`, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

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
    /// RabbitMQ server (its value is not shown: it may carry a password).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
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
    #[command(flatten)]
    pub budgets: BudgetArgs,
}

/// A setting that is missing or wrong; its message is the one line a process prints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} not configured")]
    Missing(&'static str),
    #[error("{0} must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort(&'static str),
    #[error("{name} {problem}")]
    Invalid {
        name: &'static str,
        problem: &'static str,
    },
}

/// Settings shared by both processes, checked.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    pub redis_url: String,
    pub amqp_url: String,
    pub otp_ttl_seconds: u64,
    pub key_prefix: String,
    pub queue_prefix: String,
    pub otp_secret: SecretString,
    pub log_format: crate::telemetry::LogFormat,
    /// WATI's call limit, Meta's message rate and the batch size.
    pub budgets: Budgets,
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
        Ok(CommonConfig {
            redis_url: self.redis_url,
            amqp_url: self.amqp_url,
            otp_ttl_seconds: self.otp_ttl_seconds,
            key_prefix: self.key_prefix,
            queue_prefix: self.queue_prefix,
            otp_secret: required_secret("OTP_SECRET", self.otp_secret)?,
            log_format: self.log_format,
            budgets: self.budgets.validate()?,
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
    Ok(SecretString::from(value))
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
    fn a_short_secret_is_refused_with_the_spec_text() {
        let err = required_secret("JWT_SECRET", Some("x".repeat(31))).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("JWT_SECRET must be at least 32 bytes")
        );
        assert!(required_secret("JWT_SECRET", Some("x".repeat(32))).is_ok());
    }
}
