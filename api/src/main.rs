//! Starts the api: read settings, set up logs, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use otp_api::config::ApiArgs;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match ApiArgs::parse().validate() {
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
            .map(|e| e.to_string()),
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
