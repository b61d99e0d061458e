//! Starts the api: read settings, set up logs, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
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
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: otp_api::config::ApiConfig) -> anyhow::Result<()> {
    let listeners = otp_api::Listeners::bind(&config).await.with_context(|| {
        format!(
            "cannot listen on {} and {}",
            config.api_addr, config.metrics_addr
        )
    })?;
    otp_api::run(config, listeners, otp_shared::shutdown::signal()).await?;
    Ok(())
}
