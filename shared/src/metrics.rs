//! Metric names both processes export, the Prometheus recorder with explicit buckets,
//! and the small HTTP server for `/metrics` and `/healthz` on `METRICS_ADDR`.
//!
//! Labels are low-cardinality by construction: outcomes, routes, result classes;
//! never a phone, code or request id.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// api
/// send-otp requests by `outcome`.
pub const SEND_REQUESTS: &str = "otp_send_requests_total";
/// Human checks (`captchaToken`) redeemed with the provider, by `result` (passed,
/// failed, error).
pub const HUMAN_CHECKS: &str = "otp_human_checks_total";
/// verify-otp requests by `outcome` and `channel` (of a login: `whatsapp`, or `sms`
/// when an SMS carried its code; `none` for a refusal).
pub const VERIFY_REQUESTS: &str = "otp_verify_requests_total";
/// Requests refused by a rate limit, by `scope` (`phone`, `client`, `global`, `sms`).
pub const RATE_LIMIT_REJECTIONS: &str = "otp_rate_limit_rejections_total";
/// HTTP request latency by `route`, `method` and `status`.
pub const HTTP_DURATION: &str = "otp_http_request_duration_seconds";
/// Time to publish one job and get the broker's confirm.
pub const PUBLISH_DURATION: &str = "otp_publish_duration_seconds";
/// Jobs ready in the send queue (read once a second by the api).
pub const QUEUE_READY_JOBS: &str = "otp_queue_ready_jobs";
/// Sends admitted and not yet finished by a worker, as read at the last admission.
pub const SEND_BACKLOG: &str = "otp_send_backlog";
/// How many sends may wait for WATI at once (from the budgets and the code's life).
pub const SEND_CAPACITY: &str = "otp_send_capacity";
/// Receipts by `event` (sent, delivered, read, failed, other), `outcome` (applied,
/// unchanged, unknown_send) and `channel` (whatsapp: WATI's; sms: Twilio's callbacks).
pub const RECEIPTS: &str = "otp_receipts_total";
/// Failure receipts by WhatsApp's `failed_code` (known codes; the rest are `other`).
pub const RECEIPT_FAILURES: &str = "otp_receipt_failures_total";
/// Sends WhatsApp delivered (each counted once, by its first delivered or read receipt).
pub const WHATSAPP_DELIVERED: &str = "otp_whatsapp_delivered_total";
/// From the api accepting a send to WhatsApp delivering it.
pub const ACCEPTED_TO_DELIVERED: &str = "otp_accepted_to_delivered_seconds";
/// From WhatsApp delivering a message to the user reading it.
pub const DELIVERED_TO_READ: &str = "otp_delivered_to_read_seconds";
/// 1 when receipts can reach their sends (the webhook is on and sends go through v3,
/// which sets `localMessageId`), else 0: the receipt alerts hold only then.
pub const RECEIPTS_LINKED: &str = "otp_receipts_linked";

// worker
/// Jobs by final `outcome` (sent, failed, expired, dropped) and `channel` (whatsapp,
/// sms).
pub const DELIVERIES: &str = "otp_deliveries_total";
/// Calls to WATI by `result` class.
pub const WATI_REQUESTS: &str = "otp_wati_requests_total";
/// Recipients of WATI calls by `result`: accepted, invalid_number, recipient_error,
/// not_listed, refused, rejected, transient.
pub const WATI_RECIPIENTS: &str = "otp_wati_recipients_total";
/// Recipients in one WATI call.
pub const WATI_BATCH_RECIPIENTS: &str = "otp_wati_batch_recipients";
/// Latency of one call to WATI.
pub const WATI_DURATION: &str = "otp_wati_request_duration_seconds";
/// Attempts after the first, for transient failures.
pub const RETRIES: &str = "otp_wati_retries_total";
/// From the api accepting a request to WATI accepting the message.
pub const ACCEPTED_TO_SENT: &str = "otp_accepted_to_sent_seconds";
/// Jobs a worker holds now.
pub const JOBS_IN_FLIGHT: &str = "otp_jobs_in_flight";
/// Messages dead-lettered, by `kind`: permanent_failure, malformed, unknown_version.
pub const DEAD_LETTERS: &str = "otp_dead_letters_total";
/// From a send joining its worker's next call to that call leaving: the wait for budget,
/// by the `sender` (number) the call went from.
pub const BUDGET_WAIT: &str = "otp_wati_budget_wait_seconds";
/// Each sending number's state, by `sender`: 0 healthy, 1 paused, 2 sending probes.
pub const SENDER_STATE: &str = "otp_sender_state";
/// Recipients of the calls from each number, by `sender` and `result` (as
/// `otp_wati_recipients_total`).
pub const SENDER_RECIPIENTS: &str = "otp_sender_recipients_total";
/// Failure receipts of each number's messages, by `sender` and `failed_code`.
pub const SENDER_FAILURES: &str = "otp_sender_failures_total";
/// Pauses of a number, by `sender` and `trouble`: limit (Meta limited or blocked the
/// number) or failure (a burst of failures).
pub const SENDER_PAUSES: &str = "otp_sender_pauses_total";
/// Times the next call had to wait, by the `limit` that held it: calls, messages, or
/// paused (every number paused).
pub const BUDGET_LIMITED: &str = "otp_wati_budget_limited_total";
/// Deliveries WATI accepted that could not be recorded (Redis kept failing): a copy
/// of such a job would send again.
pub const DELIVERY_RECORDS_LOST: &str = "otp_delivery_records_lost_total";
/// Age of the job a worker received last: the head of the queue, as FIFO goes.
pub const QUEUE_HEAD_AGE: &str = "otp_queue_head_age_seconds";
/// 1 when a configured `template` can carry codes (listed, APPROVED, with the code's
/// parameter) at the last check, else 0.
pub const WATI_TEMPLATE_USABLE: &str = "otp_wati_template_usable";
/// Template checks by `result`: ok, unusable, list_failed.
pub const WATI_TEMPLATE_CHECKS: &str = "otp_wati_template_checks_total";

// SMS (both processes)
/// SMS fallbacks by `trigger` (refused, receipt, timer), `result` (sms, not_allowed,
/// over_budget, needless) and `country` (an allowed calling code, or `other`).
pub const FALLBACKS: &str = "otp_fallbacks_total";
/// SMS counted against `SMS_SENDS_PER_MINUTE` and sent on: fallbacks and SMS asked for.
pub const SMS_BUDGET_USED: &str = "otp_sms_budget_used_total";
/// `SMS_SENDS_PER_MINUTE` (0: no limit), for the alert on SMS spend.
pub const SMS_BUDGET: &str = "otp_sms_budget_per_minute";
/// Sends Twilio's status callbacks say were delivered (each counted once).
pub const SMS_DELIVERED: &str = "otp_sms_delivered_total";
/// Fallback timers that ran out, by `result` of their check: checked, failed (the
/// timer runs out again), dropped (its code's life is over, or no worker read it).
pub const FALLBACK_TIMER_CHECKS: &str = "otp_fallback_timer_checks_total";
/// Calls to Twilio's Messages API by `result` class.
pub const TWILIO_REQUESTS: &str = "otp_twilio_requests_total";
/// How long Twilio took to answer.
pub const TWILIO_DURATION: &str = "otp_twilio_request_duration_seconds";

// Events to the app
/// Events by `type` and `outcome`: delivered, retried (an attempt failed, another
/// follows), dead (every attempt failed), gone (the endpoint answered 410), not_queued.
pub const APP_EVENTS: &str = "otp_app_events_total";
/// From an event happening to the app taking it.
pub const APP_EVENT_LATENCY: &str = "otp_app_event_delivery_seconds";
/// Events waiting to be posted, and how long the oldest one taken last had waited.
pub const APP_EVENTS_WAITING: &str = "otp_app_events_waiting";
pub const APP_EVENT_AGE: &str = "otp_app_event_age_seconds";

/// Every metric name above, for tests that check dashboards and rules against the code.
pub const ALL: &[&str] = &[
    SEND_REQUESTS,
    HUMAN_CHECKS,
    VERIFY_REQUESTS,
    RATE_LIMIT_REJECTIONS,
    HTTP_DURATION,
    PUBLISH_DURATION,
    QUEUE_READY_JOBS,
    SEND_BACKLOG,
    SEND_CAPACITY,
    RECEIPTS,
    RECEIPT_FAILURES,
    WHATSAPP_DELIVERED,
    ACCEPTED_TO_DELIVERED,
    DELIVERED_TO_READ,
    RECEIPTS_LINKED,
    DELIVERIES,
    WATI_REQUESTS,
    WATI_RECIPIENTS,
    WATI_BATCH_RECIPIENTS,
    WATI_DURATION,
    RETRIES,
    ACCEPTED_TO_SENT,
    JOBS_IN_FLIGHT,
    DEAD_LETTERS,
    BUDGET_WAIT,
    SENDER_STATE,
    SENDER_RECIPIENTS,
    SENDER_FAILURES,
    SENDER_PAUSES,
    BUDGET_LIMITED,
    DELIVERY_RECORDS_LOST,
    QUEUE_HEAD_AGE,
    WATI_TEMPLATE_USABLE,
    WATI_TEMPLATE_CHECKS,
    FALLBACKS,
    SMS_BUDGET_USED,
    SMS_BUDGET,
    SMS_DELIVERED,
    FALLBACK_TIMER_CHECKS,
    TWILIO_REQUESTS,
    TWILIO_DURATION,
    APP_EVENTS,
    APP_EVENT_LATENCY,
    APP_EVENTS_WAITING,
    APP_EVENT_AGE,
];

/// Buckets for request-scale latencies (seconds).
const FAST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Buckets for recipients per call, up to WATI's 10,000.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];
/// Buckets for how long people take to read a message, up to a day (seconds).
const READ_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0,
];
/// Buckets for delivery-scale latencies, up to a code's default lifetime (seconds).
const SLOW_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Connections open at once on `METRICS_ADDR`: Prometheus needs one or two.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// Shows the counter `name` with `labels` at 0 before anything is counted, so that the
/// first events after a start show in `rate()` and `increase()` (a series that appears
/// with its first value already counted reads as no change).
pub fn start_at_zero(name: &'static str, labels: &[(&'static str, &'static str)]) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(key, value)| metrics::Label::from_static_parts(key, value))
        .collect();
    metrics::counter!(name, labels).increment(0);
}

/// Installs the process-wide recorder once and returns its handle. Later calls (tests
/// that start several services in one process) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = [
                (HTTP_DURATION, FAST_BUCKETS),
                (PUBLISH_DURATION, FAST_BUCKETS),
                (WATI_DURATION, FAST_BUCKETS),
                (TWILIO_DURATION, FAST_BUCKETS),
                (APP_EVENT_LATENCY, SLOW_BUCKETS),
                (ACCEPTED_TO_SENT, SLOW_BUCKETS),
                (BUDGET_WAIT, SLOW_BUCKETS),
                (ACCEPTED_TO_DELIVERED, SLOW_BUCKETS),
                (DELIVERED_TO_READ, READ_BUCKETS),
                (WATI_BATCH_RECIPIENTS, BATCH_BUCKETS),
            ]
            .into_iter()
            .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            });
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                // Only an empty bucket list fails, and none above is empty.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Serves `/metrics` (Prometheus text) and `/healthz` on `listener`, with `timeouts`
/// (the processes pass [`crate::http::TIMEOUTS`]; tests, shorter ones), until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    timeouts: crate::http::Timeouts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(move || async move { handle.render() }))
        .route("/healthz", get(|| async { "ok" }));
    let served = crate::http::serve(
        listener,
        app,
        crate::http::Caps::total(METRICS_MAX_CONNECTIONS),
        timeouts,
        shutdown,
    )
    .await;
    upkeep.abort();
    served
}
