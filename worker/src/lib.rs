//! The worker process: consumes send jobs from RabbitMQ and delivers each code through
//! WATI, retrying transient failures until the code expires.

pub mod classify;
pub mod codes;
pub mod config;
pub mod consumer;
pub mod process;
pub mod retry;
pub mod send_rate;
pub mod wati;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use otp_shared::keys::{Keys, QueueNames};
use otp_shared::seal::CodeSealer;
use otp_shared::status::StatusStore;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::codes::CodeStore;
use crate::config::WorkerConfig;
use crate::consumer::ConsumerSettings;
use crate::process::Processor;
use crate::wati::WatiClient;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach Redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("cannot reach RabbitMQ: {0}")]
    RabbitMq(#[source] lapin::Error),
    #[error("cannot reach RabbitMQ: no answer within 10 s")]
    RabbitMqTimeout,
    #[error("cannot build the WATI client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Runs the worker until `shutdown` completes, then drains the jobs in flight (within
/// the grace period). `/metrics` and `/healthz` are served on `metrics_listener`
/// meanwhile. The binary and the tests both start the worker through here.
pub async fn run(
    config: WorkerConfig,
    metrics_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics = otp_shared::metrics::install();
    let redis = otp_shared::redis_conn::connect(&config.common.redis_url)
        .await
        .map_err(StartError::Redis)?;
    let keys = Keys::new(&config.common.key_prefix);
    let settings = Arc::new(ConsumerSettings {
        amqp_url: config.common.amqp_url.clone(),
        queues: QueueNames::new(&config.common.queue_prefix),
        concurrency: config.concurrency,
        shutdown_grace: config.shutdown_grace,
    });
    let link = tokio::time::timeout(Duration::from_secs(10), consumer::connect(&settings))
        .await
        .map_err(|_| StartError::RabbitMqTimeout)?
        .map_err(StartError::RabbitMq)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let processor = Arc::new(Processor {
        codes: CodeStore::new(
            redis.clone(),
            keys.clone(),
            Duration::from_secs(config.common.otp_ttl_seconds),
        ),
        send_rate: send_rate::SendRate::new(
            redis.clone(),
            keys.wati_send_rate(),
            config.wati.sends_per_second,
        ),
        statuses: StatusStore::new(redis, keys),
        wati: WatiClient::new(&config.wati).map_err(StartError::Http)?,
        sealer: Arc::new(CodeSealer::new(
            config.common.otp_secret.expose_secret().as_bytes(),
        )),
        retry: config.retry.clone(),
        lease: config.wati.timeout + Duration::from_secs(2),
        shutdown: stop_rx.clone(),
    });
    tracing::info!(
        send_queue = %settings.queues.send,
        dead_letter_queue = %settings.queues.dead,
        concurrency = config.concurrency,
        "worker started"
    );
    let metrics_server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(otp_shared::metrics::serve(
            metrics_listener,
            metrics,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ))
    };
    consumer::run(settings, processor, link, stop_rx).await;
    let _ = metrics_server.await;
    tracing::info!("worker stopped");
    Ok(())
}
