//! Runs the WATI sandbox for local runs: `WATI_BASE_URL=http://127.0.0.1:8090`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use wati_sandbox::{Sandbox, SandboxConfig};

/// A local stand-in for WATI's sendTemplateMessage API.
#[derive(Parser, Debug)]
#[command(name = "wati-sandbox", version, about)]
struct Args {
    /// Listen address.
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// The key callers must send as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "WATI_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    api_key: String,
    /// The one template the sandbox knows.
    #[arg(long, env = "WATI_TEMPLATE_NAME", default_value = "login_otp")]
    template_name: String,
    /// Delay before every answer, in milliseconds.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    tracing::info!(addr = %args.addr, "wati sandbox listening");
    let sandbox = Sandbox::new(SandboxConfig {
        api_key: args.api_key,
        template_name: args.template_name,
        latency: Duration::from_millis(args.latency_ms),
    });
    wati_sandbox::serve(sandbox, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("sandbox server failed")
}
