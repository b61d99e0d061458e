//! Starts the worker: read settings, set up logs, consume until SIGTERM or Ctrl-C; or,
//! with `check-wati`, check the templates on WATI and exit.

use std::process::ExitCode;

use otp_shared::config::{ConfigError, parse_keeping_secrets_off_the_command_line};
use otp_worker::config::{Command, WorkerArgs};

/// The settings, from flags and the environment; secrets from the environment only.
fn read_args() -> Result<WorkerArgs, ConfigError> {
    parse_keeping_secrets_off_the_command_line::<WorkerArgs>(&[
        ("otp_secret", "OTP_SECRET"),
        ("wati_api_key", "WATI_API_KEY"),
        ("redis_url", "REDIS_URL"),
        ("amqp_url", "AMQP_URL"),
        ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
        ("app_webhook_secret", "APP_WEBHOOK_SECRET"),
    ])
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match read_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.command == Some(Command::CheckWati) {
        return check_wati(&args).await;
    }
    let config = match args.validate() {
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
            let line = otp_shared::telemetry::error_chain(&e);
            tracing::error!("{line}");
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

/// `worker check-wati`: what an operator runs before going live. Prints each configured
/// template as WATI lists it, and exits 0 only when every one can carry the code.
async fn check_wati(args: &WorkerArgs) -> ExitCode {
    let outcome = async {
        let wati_config = args.wati().map_err(|e| e.to_string())?;
        let client = otp_worker::wati::WatiClient::new(&wati_config)
            .map_err(|e| format!("cannot build the WATI client: {e}"))?;
        let findings = otp_worker::template_check::inspect(&client, &wati_config.templates)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            otp_worker::template_check::report(&findings, wati_config.templates.param())
        );
        Ok::<bool, String>(findings.iter().all(|f| f.usable()))
    };
    match outcome.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
