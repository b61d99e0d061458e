//! What the api and the worker agree on: the send job, the whole Redis layer (keys,
//! records, scripts and their typed calls), how a code is sealed, the WATI budgets,
//! queue topology, telemetry set-up and the HTTP server both run.

pub mod amqp;
pub mod budget;
pub mod config;
pub mod config_error;
pub mod events;
pub mod http;
pub mod job;
pub mod locale;
pub mod metrics;
pub mod phone;
pub mod publisher;
pub mod redis;
pub mod seal;
pub mod senders;
pub mod shutdown;
pub mod sms;
pub mod sms_fallback;
pub mod telemetry;

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
