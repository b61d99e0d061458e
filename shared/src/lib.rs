//! What the api and the worker agree on: the send job, the Redis key layout and record
//! layouts, how a code is sealed, delivery status records, the WATI budgets, queue
//! topology, telemetry set-up and the HTTP server both run.

pub mod amqp;
pub mod budget;
pub mod config;
pub mod http;
pub mod job;
pub mod keys;
pub mod metrics;
pub mod phone;
pub mod records;
pub mod redis_conn;
pub mod seal;
pub mod shutdown;
pub mod status;
pub mod telemetry;

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
