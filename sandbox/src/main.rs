//! Runs the WATI sandbox for local runs: `WATI_BASE_URL=http://127.0.0.1:8090`.

use anyhow::Context;
use clap::Parser;
use wati_sandbox::{Sandbox, SandboxArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = SandboxArgs::parse();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    tracing::info!(addr = %args.addr, "wati sandbox listening");
    let sandbox = Sandbox::new(args.into_config().map_err(anyhow::Error::msg)?);
    wati_sandbox::serve(sandbox, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("sandbox server failed")
}
