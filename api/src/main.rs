//! Starts the api: read settings, set up logs, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use otp_api::config::{ApiArgs, ApiConfig};
use otp_shared::config::{ConfigError, parse_keeping_secrets_off_the_command_line};

/// The settings, from flags and the environment; secrets from the environment only.
fn read_settings() -> Result<ApiConfig, ConfigError> {
    parse_keeping_secrets_off_the_command_line::<ApiArgs>(&[
        ("jwt_secret", "JWT_SECRET"),
        ("otp_secret", "OTP_SECRET"),
        ("wati_webhook_secret", "WATI_WEBHOOK_SECRET"),
        ("redis_url", "REDIS_URL"),
        ("amqp_url", "AMQP_URL"),
        ("database_url", "DATABASE_URL"),
        ("test_phones", "TEST_PHONES"),
        ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
        ("app_webhook_secret", "APP_WEBHOOK_SECRET"),
    ])?
    .validate()
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match read_settings() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    otp_shared::telemetry::init(config.common.log_format);
    // Each error's text already names its cause: one line, printed once.
    let failure = match otp_api::Listeners::bind(&config).await {
        Ok(listeners) => otp_api::run(config, listeners, otp_shared::shutdown::signal())
            .await
            .err()
            .map(|e| otp_shared::telemetry::error_chain(&e)),
        Err(e) => Some(format!(
            "cannot listen on {} and {}: {e}",
            config.api_addr, config.metrics_addr
        )),
    };
    match failure {
        None => ExitCode::SUCCESS,
        Some(line) => {
            tracing::error!("{line}");
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}
