//! The api process: takes phone numbers, stores sealed codes in Redis, publishes send
//! jobs to RabbitMQ, verifies codes and issues session tokens.

pub mod client;
pub mod code;
pub mod config;
pub mod country_budget;
pub mod db;
pub mod error;
pub mod human_check;
pub mod login;
pub mod login_page;
pub mod phone;
pub mod pool;
pub mod pressure;
pub mod queue_depth;
pub mod receipts;
pub mod review_phones;
pub mod routes;
pub mod send;
pub mod sms;
pub mod state;
pub mod store;
pub mod token;
pub mod twilio_signature;
pub mod users;

use std::future::Future;
use std::sync::Arc;

use otp_shared::amqp::QueueNames;
use otp_shared::redis::fallback::Fallbacks;
use otp_shared::redis::keys::Keys;
use otp_shared::redis::sender_health::{PoolView, SenderHealth};
use otp_shared::redis::status::StatusStore;
use otp_shared::redis::{admission, send_budget};
use otp_shared::seal::CodeSealer;
use otp_shared::sms_fallback::SmsFallback;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ApiConfig;
use crate::state::{AppState, HandlerSettings, Handlers};
use crate::store::{OtpStore, StorePolicy};
use crate::token::TokenIssuer;
use crate::users::UserStore;
use otp_shared::publisher::{Publisher, Target};

/// How often each replica purges old refresh sessions and tokens.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Why the api could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach Redis")]
    Redis(#[source] redis::RedisError),
    #[error("cannot reach RabbitMQ")]
    RabbitMq(#[source] otp_shared::publisher::PublishError),
    #[error(transparent)]
    Queue(otp_shared::amqp::DeclareError),
    #[error(transparent)]
    Postgres(#[from] db::DbStartError),
    #[error("cannot make the human check's HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("http server failed")]
    Serve(#[source] std::io::Error),
}

/// Connects to Redis and RabbitMQ and builds the handlers' state.
pub async fn build_state(config: &ApiConfig) -> Result<AppState, StartError> {
    phone::warm_up();
    let redis = otp_shared::redis::conn::connect(&config.common.redis_url)
        .await
        .map_err(StartError::Redis)?;
    let db = db::connect(&config.database_url).await?;
    let queues = QueueNames::new(&config.common.queue_prefix);
    // The api publishes WhatsApp sends, SMS sends when SMS is on, and events when they
    // are on.
    let mut targets = vec![Target::Send];
    if config.common.sms.is_some() {
        targets.push(Target::Sms);
    }
    if config.common.events.is_some() {
        targets.push(Target::Events);
    }
    let publisher = Publisher::connect(
        &config.common.amqp_url,
        "otp-api",
        queues,
        config.common.queue,
        &targets,
    )
    .await
    .map_err(|e| match e {
        otp_shared::publisher::PublishError::Declare(
            mismatch @ otp_shared::amqp::DeclareError::Mismatch { .. },
        ) => StartError::Queue(mismatch),
        other => StartError::RabbitMq(other),
    })?;
    let keys = Keys::new(&config.common.key_prefix);
    let publisher = Arc::new(publisher);
    let events = config
        .common
        .events
        .as_ref()
        .map(|settings| otp_shared::events::Emitter::new(publisher.clone(), settings));
    let sms = config.common.sms.as_ref().map(|settings| {
        metrics::gauge!(otp_shared::metrics::SMS_BUDGET).set(f64::from(settings.sends_per_minute));
        let budget = send_budget::SendBudget::sms(redis.clone(), &keys, settings.sends_per_minute);
        sms::SmsApi {
            settings: settings.clone(),
            budget: budget.clone(),
            fallback: SmsFallback::new(
                settings.clone(),
                budget,
                Fallbacks::new(redis.clone(), keys.clone()),
                publisher.clone(),
            )
            .with_events(events.clone()),
        }
    });
    let sealer = Arc::new(CodeSealer::new(
        config.common.otp_secret.expose_secret().as_bytes(),
    ));
    let policy = StorePolicy {
        ttl: config.common.otp_ttl,
        max_attempts: config.otp_max_attempts,
        wrong_guesses_per_phone: config.wrong_guesses_per_phone,
        limits: config.limits.clone(),
        unchecked_sends_per_hour: config.human_check.as_ref().map_or(0, |h| h.after_sends),
    };
    let human_check = config
        .human_check
        .clone()
        .map(human_check::HumanCheck::new)
        .transpose()
        .map_err(StartError::HttpClient)?
        .map(Arc::new);
    let ttl = config.common.otp_ttl;
    let pool = pool::SendingPool {
        senders: config.common.budgets.senders.clone(),
        health: SenderHealth::new(redis.clone(), &keys, config.common.budgets.sender_pause),
        view: PoolView::default(),
    };
    Ok(AppState::new(Handlers {
        admission: Arc::new(admission::Admission::new(
            redis.clone(),
            &keys,
            &config.common.budgets,
            ttl,
            admission::reserve_for(ttl, config.limits.resend_cooldown),
            pool.view.clone(),
        )),
        pool,
        send_budget: send_budget::SendBudget::new(
            redis.clone(),
            &keys,
            config.limits.sends_per_minute,
        ),
        store: OtpStore::new(redis.clone(), keys.clone(), sealer, policy),
        users: UserStore::new(
            db.clone(),
            redis.clone(),
            keys.clone(),
            config.refresh_ttl,
            config.jwt_ttl,
        ),
        db,
        statuses: StatusStore::new(redis.clone(), keys.clone()),
        receipts: receipts::ReceiptStore::new(redis.clone(), keys.clone()),
        keys,
        redis,
        publisher,
        sms,
        events,
        human_check,
        pressure: Arc::default(),
        tokens: Arc::new(TokenIssuer::new(
            config.token_keys.clone(),
            &config.jwt_issuer,
            config.jwt_ttl,
        )),
        settings: Arc::new(HandlerSettings {
            otp_length: config.otp_length,
            trusted_proxies: config.limits.trusted_proxies.clone(),
            allowed_countries: config.allowed_countries.clone(),
            allowed_number_types: config.allowed_number_types.clone(),
            country_budgets: config.country_budgets.clone(),
            webhook_secret: config.wati_webhook_secret.clone(),
            country_locales: config.country_locales.clone(),
            review_phones: config.review_phones.clone(),
            login_page: config.login_page.then(|| {
                login_page::LoginPage::render(
                    config.login_page_inbox_url.as_deref(),
                    config.human_check.as_ref(),
                )
            }),
        }),
    }))
}

/// The counters the dashboard's ratios and the alerts read, shown at 0 from the start.
fn start_counters_at_zero() {
    use otp_shared::metrics::{
        RECEIPTS, SEND_REQUESTS, SMS_DELIVERED, VERIFY_REQUESTS, WHATSAPP_DELIVERED, start_at_zero,
    };
    start_at_zero(SEND_REQUESTS, &[("outcome", "accepted")]);
    for channel in ["whatsapp", "sms"] {
        start_at_zero(
            VERIFY_REQUESTS,
            &[("outcome", "verified"), ("channel", channel)],
        );
    }
    start_at_zero(WHATSAPP_DELIVERED, &[]);
    start_at_zero(SMS_DELIVERED, &[]);
    for event in receipts::Event::LABELS {
        for outcome in receipts::Applied::LABELS {
            start_at_zero(
                RECEIPTS,
                &[
                    ("event", event),
                    ("outcome", outcome),
                    ("channel", "whatsapp"),
                ],
            );
        }
    }
}

/// Where the api listens: public HTTP (`API_ADDR`) and metrics (`METRICS_ADDR`).
pub struct Listeners {
    pub http: TcpListener,
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `config`.
    pub async fn bind(config: &ApiConfig) -> std::io::Result<Self> {
        Ok(Self {
            http: TcpListener::bind(config.api_addr).await?,
            metrics: TcpListener::bind(config.metrics_addr).await?,
        })
    }
}

/// Serves the api until `shutdown` completes, then finishes the requests in flight.
/// The binary and the tests both start the api through here.
pub async fn run(
    config: ApiConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics = otp_shared::metrics::install();
    let state = build_state(&config).await?;
    start_counters_at_zero();
    let receipts_linked = config.wati_webhook_secret.is_some()
        && config.common.budgets.api_version == otp_shared::budget::WatiApiVersion::V3;
    metrics::gauge!(otp_shared::metrics::RECEIPTS_LINKED).set(f64::from(u8::from(receipts_linked)));
    if !config.review_phones.is_empty() {
        tracing::warn!(
            review_phones = config.review_phones.len(),
            "TEST_PHONES is set: these phones log in with a fixed code and get no message; \
             keep the list short and the codes secret"
        );
    }
    let queues = state.publisher.queues();
    let Listeners {
        http: listener,
        metrics: metrics_listener,
    } = listeners;
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        metrics_addr = ?metrics_listener.local_addr().ok(),
        send_queue = %queues.send,
        dead_letter_queue = %queues.dead,
        key_prefix = %config.common.key_prefix,
        "api listening"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_for_metrics = stop_rx.clone();
    let purge = tokio::spawn(users::purge_every(
        state.users.clone(),
        PURGE_EVERY,
        stop_rx.clone(),
    ));
    let pool_watch = tokio::spawn(state.pool.health.clone().watch(
        state.pool.senders.clone(),
        state.pool.view.clone(),
        stop_rx.clone(),
    ));
    let depth_watch = tokio::spawn(queue_depth::watch_depth(state.publisher.clone(), stop_rx));
    let metrics_server = {
        let mut stop = stop_rx_for_metrics;
        tokio::spawn(otp_shared::metrics::serve(
            metrics_listener,
            metrics,
            config.metrics_timeouts,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ))
    };
    // One address may not hold every connection; a proxy in front carries many clients.
    let per_client = (config.http_max_connections_per_client > 0).then(|| {
        let proxies = state.settings.trusted_proxies.clone();
        otp_shared::http::PerClient {
            limit: config.http_max_connections_per_client,
            exempt: Arc::new(move |peer| proxies.trusts(peer)),
        }
    });
    let caps = otp_shared::http::Caps {
        total: otp_shared::http::fit_to_file_limit(config.http_max_connections),
        per_client,
    };
    let app = routes::router(state);
    let served = otp_shared::http::serve(listener, app, caps, config.http_timeouts, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    depth_watch.abort();
    pool_watch.abort();
    purge.abort();
    let _ = metrics_server.await;
    served.map_err(StartError::Serve)
}
