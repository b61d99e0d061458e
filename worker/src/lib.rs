//! The worker process: consumes send jobs from RabbitMQ and delivers the codes through
//! WATI in batched calls within the shared budgets, retrying transient failures until
//! each code expires.

pub mod batcher;
pub mod classify;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod retry;
pub mod template_check;
pub mod templates;
pub mod wati;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use otp_shared::amqp::QueueNames;
use tokio::sync::watch;

use crate::config::WorkerConfig;
use crate::consumer::ConsumerSettings;
use crate::delivery::Deliverer;
use crate::wati::WatiClient;

/// Why the worker could not start, or stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the batcher stopped unexpectedly; this worker can deliver nothing")]
    BatcherStopped,
    #[error("cannot reach Redis")]
    Redis(#[source] redis::RedisError),
    #[error("cannot reach RabbitMQ")]
    RabbitMq(#[source] consumer::LinkError),
    #[error(transparent)]
    Queue(otp_shared::amqp::DeclareError),
    #[error("cannot reach RabbitMQ: no answer within 10 s")]
    RabbitMqTimeout,
    #[error("cannot build the WATI client")]
    Http(#[source] reqwest::Error),
    #[error(transparent)]
    Templates(#[from] template_check::CheckError),
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
    // The acceptance ratio and the alerts read these from the first delivery on.
    for outcome in delivery::Outcome::LABELS {
        otp_shared::metrics::start_at_zero(
            otp_shared::metrics::DELIVERIES,
            &[("outcome", outcome)],
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    // Served from the start: `/healthz` answers, and the template check's failures are
    // counted where they can be seen, while the worker waits to take jobs.
    let metrics_server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(otp_shared::metrics::serve(
            metrics_listener,
            metrics,
            otp_shared::http::TIMEOUTS,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ))
    };
    let outcome = deliver(config, stop_tx.clone(), stop_rx).await;
    // However it ended, the metrics server ends with it.
    let _ = stop_tx.send(true);
    let _ = metrics_server.await;
    tracing::info!("worker stopped");
    outcome
}

/// Checks the templates, connects, and delivers until the worker stops.
async fn deliver(
    config: WorkerConfig,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let wati = WatiClient::new(&config.wati).map_err(StartError::Http)?;
    // No job is taken before the templates are known to carry the code.
    if !template_check::at_start(&wati, &config.wati, stop_rx.clone()).await? {
        return Ok(());
    }
    log_template_room(&config);
    let redis = otp_shared::redis::conn::connect(&config.common.redis_url)
        .await
        .map_err(StartError::Redis)?;
    let settings = Arc::new(ConsumerSettings {
        amqp_url: config.common.amqp_url.clone(),
        queues: QueueNames::new(&config.common.queue_prefix),
        queue_settings: config.common.queue,
        dead_letters: config.dead_letters,
        concurrency: config.concurrency,
        shutdown_grace: config.shutdown_grace,
    });
    let link = tokio::time::timeout(Duration::from_secs(10), consumer::connect(&settings))
        .await
        .map_err(|_| StartError::RabbitMqTimeout)?
        .map_err(|e| match e {
            consumer::LinkError::Declare(
                mismatch @ otp_shared::amqp::DeclareError::Mismatch { .. },
            ) => StartError::Queue(mismatch),
            other => StartError::RabbitMq(other),
        })?;
    if let (Some(every), true) = (
        config.wati.recheck_every,
        config.wati.preflight != config::Preflight::Off,
    ) {
        tokio::spawn(template_check::recheck(
            wati.clone(),
            config.wati.templates.clone(),
            every,
            stop_rx.clone(),
        ));
    }
    let (deliverer, mut batcher) = Deliverer::start(&config, wati, redis, stop_rx.clone());
    let budgets = &config.common.budgets;
    tracing::info!(
        send_queue = %settings.queues.send,
        dead_letter_queue = %settings.queues.dead,
        concurrency = config.concurrency,
        wati_api_version = ?budgets.api_version,
        recipients_per_call = budgets.recipients_per_call,
        calls_per_10s = budgets.calls_per_10s,
        messages_per_second = budgets.messages_per_second,
        "worker started"
    );
    let stopping = stop_rx.clone();
    let consumed = consumer::run(settings, Arc::new(deliverer), link, stop_rx);
    tokio::pin!(consumed);
    tokio::select! {
        () = &mut consumed => Ok(()),
        _ = &mut batcher => {
            if *stopping.borrow() {
                consumed.await;
                Ok(())
            } else {
                // Without its batcher a worker would take jobs and hand every one back:
                // stop, so that they go to other workers and this one is restarted.
                tracing::error!("the batcher stopped unexpectedly");
                let _ = stop_tx.send(true);
                consumed.await;
                Err(StartError::BatcherStopped)
            }
        }
    }
}

/// Says how many workers a burst that mixes every template can have before admission's
/// promise may break: the api counts calls half full, which leaves room for one partly
/// filled call per worker and template in a code's life; calls carry one template each.
fn log_template_room(config: &WorkerConfig) {
    let ttl = config.common.otp_ttl;
    let templates = config.wati.templates.configured().len() as u64;
    if let Some(room) = config.common.budgets.partial_call_room(ttl) {
        tracing::info!(
            room_for_partial_calls = room,
            templates,
            workers = room / templates.max(1),
            "admission holds its promise in a burst over every template for up to this many workers"
        );
    }
}
