//! Reads the send queue's depth once a second for the `otp_queue_ready_jobs` gauge.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use otp_shared::publisher::Publisher;

/// How often the queue depth is read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the depth every second until `stop` turns true. A failed reading keeps the
/// gauge at its last value.
pub async fn watch_depth(publisher: Arc<Publisher>, mut stop: watch::Receiver<bool>) {
    loop {
        match publisher.ready_jobs().await {
            Ok(ready) => metrics::gauge!(otp_shared::metrics::QUEUE_READY_JOBS).set(ready as f64),
            Err(e) => tracing::debug!(error = %e, "could not read the send queue depth"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}
