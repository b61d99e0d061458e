//! Starts the worker: read settings, set up logs, consume until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use otp_shared::config::{ConfigError, parse_keeping_secrets_off_the_command_line};
use otp_worker::config::{WorkerArgs, WorkerConfig};

/// The settings, from flags and the environment; secrets from the environment only.
fn read_settings() -> Result<WorkerConfig, ConfigError> {
    parse_keeping_secrets_off_the_command_line::<WorkerArgs>(&[
        ("otp_secret", "OTP_SECRET"),
        ("wati_api_key", "WATI_API_KEY"),
        ("redis_url", "REDIS_URL"),
        ("amqp_url", "AMQP_URL"),
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
    let metrics_listener = match tokio::net::TcpListener::bind(config.metrics_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.metrics_addr);
            return ExitCode::FAILURE;
        }
    };
    match otp_worker::run(config, metrics_listener, otp_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
