//! The worker process: consumes send jobs from RabbitMQ and delivers the codes through
//! WATI in batched calls within the shared budgets, retrying transient failures until
//! each code expires; with SMS on, it also sends the SMS queue's codes through Twilio
//! and checks the sends whose fallback timer ran out.

pub mod app_events;
pub mod batcher;
pub mod classify;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod fallback_check;
pub mod fallback_timer;
pub mod http_client;
pub mod retry;
pub mod sms;
pub mod template_check;
pub mod templates;
pub mod wati;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use otp_shared::amqp::QueueNames;
use otp_shared::events::Emitter;
use otp_shared::publisher::{Publisher, Target};
use otp_shared::redis::fallback::Fallbacks;
use otp_shared::redis::fallback_timers::FallbackTimers;
use otp_shared::redis::keys::Keys;
use otp_shared::redis::send_budget::SendBudget;
use otp_shared::sms_fallback::SmsFallback;
use tokio::sync::watch;

use crate::config::WorkerConfig;
use crate::consumer::{ConsumerSettings, JobQueue};
use crate::delivery::Deliverer;
use crate::sms::twilio::TwilioClient;
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
    #[error("cannot build the Twilio client")]
    TwilioHttp(#[source] reqwest::Error),
    #[error("cannot reach RabbitMQ to publish SMS jobs and events")]
    Publisher(#[source] otp_shared::publisher::PublishError),
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
            &[("outcome", outcome), ("channel", "whatsapp")],
        );
        if config.sms.is_some() {
            otp_shared::metrics::start_at_zero(
                otp_shared::metrics::DELIVERIES,
                &[("outcome", outcome), ("channel", "sms")],
            );
        }
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
    let settings = |queue| {
        Arc::new(ConsumerSettings {
            amqp_url: config.common.amqp_url.clone(),
            queue,
            queues: QueueNames::new(&config.common.queue_prefix),
            queue_settings: config.common.queue,
            dead_letters: config.dead_letters,
            concurrency: config.concurrency,
            shutdown_grace: config.shutdown_grace,
        })
    };
    let send_settings = settings(JobQueue::Send);
    let link = first_link(&send_settings).await?;
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
    let (mut deliverer, mut batcher) =
        Deliverer::start(&config, wati, redis.clone(), stop_rx.clone());
    // SMS and events publish from the worker too: SMS jobs, events and their
    // retries.
    let publisher = publisher(&config).await?;
    let events = match (&config.common.events, &publisher) {
        (Some(events), Some(publisher)) => Some(Emitter::new(publisher.clone(), events)),
        _ => None,
    };
    if let Some(events) = &events {
        deliverer = deliverer.with_events(events.clone());
    }
    let mut more_consumers = Vec::new();
    // With SMS on, SMS sends to consume, and fallback timers to check.
    if let (Some(sms), Some(publisher)) = (&config.sms, &publisher) {
        let (fallback, consumers) = start_sms(
            &config,
            sms,
            &redis,
            publisher.clone(),
            events.clone(),
            &settings,
            &stop_rx,
        )
        .await?;
        deliverer = deliverer.with_fallback(fallback);
        more_consumers.extend(consumers);
    }
    // With events on, one more: the events to post.
    if let (Some(events), Some(publisher)) = (&config.common.events, &publisher) {
        let keys = Keys::new(&config.common.key_prefix);
        let sender = app_events::EventSender::new(events, publisher.clone(), redis.clone(), &keys)
            .map_err(StartError::Http)?;
        let mut event_settings = settings(JobQueue::Events);
        if let Some(s) = Arc::get_mut(&mut event_settings) {
            s.concurrency = EVENTS_IN_FLIGHT;
        }
        let link = first_link(&event_settings).await?;
        tokio::spawn(app_events::watch_waiting(
            publisher.clone(),
            stop_rx.clone(),
        ));
        more_consumers.push(Box::pin(consumer::run(
            event_settings,
            Arc::new(sender),
            link,
            stop_rx.clone(),
        )));
        tracing::info!(url = %events.url, types = events.wanted.len(), "events to the app on");
    }
    let budgets = &config.common.budgets;
    tracing::info!(
        send_queue = %send_settings.queues.send,
        dead_letter_queue = %send_settings.queues.dead,
        concurrency = config.concurrency,
        wati_api_version = ?budgets.api_version,
        recipients_per_call = budgets.recipients_per_call,
        calls_per_10s = budgets.calls_per_10s,
        senders = ?budgets
            .senders
            .iter()
            .map(|s| format!("{}={}", s.name(), s.messages_per_second))
            .collect::<Vec<_>>(),
        sms = config.sms.is_some(),
        "worker started"
    );
    let stopping = stop_rx.clone();
    let consumed = async {
        let whatsapp = consumer::run(send_settings, Arc::new(deliverer), link, stop_rx);
        futures_util::future::join(whatsapp, futures_util::future::join_all(more_consumers)).await;
    };
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

/// A consumer's first link, within 10 s: a mismatched queue is its own error.
async fn first_link(settings: &ConsumerSettings) -> Result<consumer::Link, StartError> {
    tokio::time::timeout(Duration::from_secs(10), consumer::connect(settings))
        .await
        .map_err(|_| StartError::RabbitMqTimeout)?
        .map_err(|e| match e {
            consumer::LinkError::Declare(
                mismatch @ otp_shared::amqp::DeclareError::Mismatch { .. },
            ) => StartError::Queue(mismatch),
            other => StartError::RabbitMq(other),
        })
}

/// A consumer running until the worker stops.
type Consumer = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Requests in flight to the app's webhook, per worker: a slow endpoint holds no more.
const EVENTS_IN_FLIGHT: u16 = 16;

/// The worker's publisher, when SMS or events are on: it declares what it publishes to.
async fn publisher(config: &WorkerConfig) -> Result<Option<Arc<Publisher>>, StartError> {
    let mut targets = Vec::new();
    if config.sms.is_some() {
        targets.push(Target::Sms);
    }
    if config.common.events.is_some() {
        targets.push(Target::EventRetries);
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let publisher = Publisher::connect(
        &config.common.amqp_url,
        "otp-worker",
        QueueNames::new(&config.common.queue_prefix),
        config.common.queue,
        &targets,
    )
    .await
    .map_err(StartError::Publisher)?;
    Ok(Some(Arc::new(publisher)))
}

/// Starts what SMS needs: the fallback WhatsApp sends use (through `publisher`: SMS
/// jobs; timers in Redis), the consumer of the SMS queue, and the check of the timers
/// that ran out.
async fn start_sms(
    config: &WorkerConfig,
    sms: &config::SmsConfig,
    redis: &otp_shared::redis::conn::RedisConn,
    publisher: Arc<Publisher>,
    events: Option<Emitter>,
    settings: &impl Fn(JobQueue) -> Arc<ConsumerSettings>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<(delivery::Fallback, Vec<Consumer>), StartError> {
    let keys = Keys::new(&config.common.key_prefix);
    metrics::gauge!(otp_shared::metrics::SMS_BUDGET).set(f64::from(sms.settings.sends_per_minute));
    let fallback_timers = FallbackTimers::new(redis.clone(), &keys);
    fallback_check::start_counting();
    let timers = sms
        .fallback_after
        .map(|after| fallback_timer::Timers::start(fallback_timers.clone(), after));
    let fallback = SmsFallback::new(
        sms.settings.clone(),
        SendBudget::sms(redis.clone(), &keys, sms.settings.sends_per_minute),
        Fallbacks::new(redis.clone(), keys),
        publisher,
    )
    .with_events(events.clone());
    let twilio = TwilioClient::new(&sms.twilio).map_err(StartError::TwilioHttp)?;
    let mut sms_deliverer = Deliverer::new(
        config,
        sms::Sms::new(twilio, sms.text.clone()),
        redis.clone(),
        stop_rx.clone(),
    );
    if let Some(events) = events {
        sms_deliverer = sms_deliverer.with_events(events);
    }
    let sms_settings = settings(JobQueue::Sms);
    let sms_link = first_link(&sms_settings).await?;
    // Timers set by any worker are checked by every worker with SMS on, this one's
    // timer or none.
    let consumers: Vec<Consumer> = vec![
        Box::pin(consumer::run(
            sms_settings,
            Arc::new(sms_deliverer),
            sms_link,
            stop_rx.clone(),
        )),
        Box::pin(fallback_check::run(
            fallback_check::Checker {
                timers: fallback_timers,
                sms: fallback.clone(),
                code_life: config.common.otp_ttl,
            },
            stop_rx.clone(),
        )),
    ];
    tracing::info!(
        fallback_after_seconds = sms.fallback_after.map_or(0, |d| d.as_secs()),
        sms_sends_per_minute = sms.settings.sends_per_minute,
        "SMS on"
    );
    Ok((
        delivery::Fallback {
            sms: fallback,
            timers,
        },
        consumers,
    ))
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
