//! Backlog-aware admission: refuse a code that could not be sent before it expires.
//!
//! The estimate: a new job waits behind the jobs ready in the send queue, and all
//! workers together send at most `WATI_SENDS_PER_SECOND`, so its wait is about
//! `ready jobs ÷ send rate` seconds. When that exceeds the code's lifetime, the code
//! would arrive dead; the api answers 503 with `Retry-After` instead. Queue depth is
//! read from RabbitMQ once a second, so the check costs nothing per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::publisher::Publisher;

/// How often the queue depth is read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct Admission {
    /// Jobs ready in the send queue at the last reading.
    ready_jobs: AtomicU64,
    sends_per_second: u32,
    code_ttl: Duration,
}

impl Admission {
    pub fn new(sends_per_second: u32, code_ttl: Duration) -> Self {
        Self {
            ready_jobs: AtomicU64::new(0),
            sends_per_second,
            code_ttl,
        }
    }

    /// `Some(wait)` when a new code would expire in the queue: how long until the
    /// backlog is short enough again.
    pub fn refuse_for(&self) -> Option<Duration> {
        if self.sends_per_second == 0 {
            return None;
        }
        let ready = self.ready_jobs.load(Ordering::Relaxed);
        let queue_wait = Duration::from_secs_f64(ready as f64 / f64::from(self.sends_per_second));
        (queue_wait > self.code_ttl).then(|| queue_wait - self.code_ttl)
    }

    pub fn record_depth(&self, ready_jobs: u64) {
        self.ready_jobs.store(ready_jobs, Ordering::Relaxed);
    }
}

/// Reads the send queue's depth every second until `stop` turns true, for admission
/// and for the queue-depth gauge. A failed reading keeps the last one: admission is a
/// guard, not a reason to refuse.
pub async fn watch_depth(
    admission: Arc<Admission>,
    publisher: Arc<Publisher>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match publisher.ready_jobs().await {
            Ok(ready) => {
                admission.record_depth(ready);
                metrics::gauge!(otp_shared::metrics::QUEUE_READY_JOBS).set(ready as f64);
            }
            Err(e) => tracing::debug!(error = %e, "could not read the send queue depth"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_longer_than_the_ttl_is_refused_until_it_shrinks() {
        let admission = Admission::new(10, Duration::from_secs(300));
        admission.record_depth(3000);
        assert_eq!(admission.refuse_for(), None);
        admission.record_depth(3500);
        assert_eq!(admission.refuse_for(), Some(Duration::from_secs(50)));
    }

    #[test]
    fn no_rate_means_no_refusal() {
        let admission = Admission::new(0, Duration::from_secs(1));
        admission.record_depth(1_000_000);
        assert_eq!(admission.refuse_for(), None);
    }
}
