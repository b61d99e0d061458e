//! Starts the worker: read settings, set up logs, consume until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use otp_worker::config::WorkerArgs;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match WorkerArgs::parse().validate() {
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
