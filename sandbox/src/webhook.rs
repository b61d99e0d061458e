//! Posting receipts to the webhook: keep-alive connections kept for reuse, a cap on
//! posts in flight, WATI's retries, and a record of each post's outcome for tests. Twilio's
//! status callbacks (`sms_callback`) share the connections and the cap. The posts use the
//! lean HTTP/1.1 client: in a benchmark the sandbox stands in for WATI's servers but runs
//! on the cores of the system under test, so it must cost little.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::Semaphore;

use crate::Sandbox;
use crate::http1::Connection;
use crate::record::ReceiptRecord;
use crate::send::now_ms;

/// Posts waiting on a receiver at once; a burst of receipts queues behind these.
const MAX_IN_FLIGHT: usize = 64;
/// Longest wait for one post, answer included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the second, third and fourth attempt; after the fourth, give up.
/// (WATI retries every 10 minutes for a day; a sandbox run cannot wait that long.)
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Where a webhook URL points: `host:port` and the path. Only `http://` is posted to.
fn target(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    authority.contains(':').then_some((authority, path))
}

/// The connections and the cap all receipt posts share.
pub(crate) struct Webhook {
    /// Idle keep-alive connections, with the `host:port` each is open to.
    idle: Mutex<Vec<(String, Connection)>>,
    in_flight: Semaphore,
    /// [`RETRY_DELAYS`]; a unit test shortens them.
    retry_delays: [Duration; 3],
}

impl Webhook {
    pub(crate) fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            retry_delays: RETRY_DELAYS,
        }
    }

    /// One attempt: when it started (once there was room), and the receiver's status, or
    /// `None` if it never answered within [`POST_TIMEOUT`].
    pub(crate) async fn attempt(&self, url: &str, payload: &Payload) -> (u64, Option<u16>) {
        // Never closed, so this waits for room and does not fail.
        let permit = self.in_flight.acquire().await;
        let started_at_ms = now_ms();
        let status = match (permit, target(url)) {
            (Ok(_permit), Some((host, path))) => {
                tokio::time::timeout(POST_TIMEOUT, self.post(host, path, payload))
                    .await
                    .ok()
                    .flatten()
            }
            (_, None) => {
                tracing::warn!("a callback URL is not http://host:port/…; its posts fail");
                None
            }
            (Err(_), _) => None,
        };
        (started_at_ms, status)
    }

    /// Posts over an idle connection to `host` if there is one, else a new one; the
    /// connection is kept for the next post only after a whole answer.
    async fn post(&self, host: &str, path: &str, payload: &Payload) -> Option<u16> {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let found = idle.iter().position(|(to, _)| to == host);
            found.map(|i| idle.swap_remove(i).1)
        };
        let body = std::str::from_utf8(&payload.body).ok()?;
        let headers: Vec<(&str, &str)> = payload
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let was_reused = reused.is_some();
        let mut connection = match reused {
            Some(connection) => connection,
            None => Connection::open_host(host).await.ok()?,
        };
        let status = match connection
            .post(path, payload.content_type, &headers, body)
            .await
        {
            Ok(status) => status,
            // An idle connection the receiver closed meanwhile: try once on a new one. A
            // new connection that fails is the attempt's failure, for the caller's retry
            // policy to judge.
            Err(_) if was_reused => {
                connection = Connection::open_host(host).await.ok()?;
                connection
                    .post(path, payload.content_type, &headers, body)
                    .await
                    .ok()?
            }
            Err(_) => return None,
        };
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((host.to_owned(), connection));
        Some(status)
    }
}

/// What one post carries.
pub(crate) struct Payload {
    pub content_type: &'static str,
    /// Headers of its own, such as `X-Twilio-Signature`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Payload {
    pub(crate) fn json(body: Bytes) -> Self {
        Self {
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }
}

/// One copy of one event for one message.
pub(crate) struct Post {
    pub url: Arc<str>,
    pub body: Bytes,
    pub event: &'static str,
    pub local_message_id: String,
    pub phone: String,
    pub generation: u64,
}

/// Posts until the receiver answers 2xx or the retries run out, then records the outcome.
pub(crate) async fn deliver(sandbox: &Sandbox, post: Post) {
    let mut attempts = 0;
    let mut delays = sandbox.webhook.retry_delays.iter();
    let payload = Payload::json(post.body);
    let (posted_at_ms, status) = loop {
        attempts += 1;
        let (posted_at_ms, status) = sandbox.webhook.attempt(&post.url, &payload).await;
        match delays.next() {
            Some(delay) if !is_2xx(status) => tokio::time::sleep(*delay).await,
            _ => break (posted_at_ms, status),
        }
    };
    let delivered = is_2xx(status);
    if !delivered {
        // No body, no phone: the body holds the code and the phone is personal.
        tracing::warn!(
            event = post.event,
            ?status,
            attempts,
            "webhook gave up on a receipt"
        );
    }
    sandbox.recorded().record_receipt(
        post.generation,
        delivered,
        ReceiptRecord {
            event: post.event.to_owned(),
            local_message_id: post.local_message_id,
            phone: post.phone,
            posted_at_ms,
            status,
            attempts,
        },
    );
}

/// A receiver that answered 2xx has taken the event.
pub(crate) fn is_2xx(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SandboxConfig;

    #[test]
    fn only_http_urls_with_a_port_are_posted_to() {
        assert_eq!(
            target("http://127.0.0.1:8080/api/webhooks/wati/s"),
            Some(("127.0.0.1:8080", "/api/webhooks/wati/s"))
        );
        assert_eq!(target("http://api:8080"), Some(("api:8080", "/")));
        assert_eq!(target("https://api:8080/x"), None);
        assert_eq!(target("http://api/x"), None);
    }

    #[tokio::test]
    async fn a_post_nobody_answers_is_tried_four_times_then_counted_as_failed() {
        // A port nobody listens on any more: every attempt is refused.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
        drop(listener);
        let sandbox = Sandbox {
            webhook: Arc::new(Webhook {
                retry_delays: [Duration::from_millis(1); 3],
                ..Webhook::new()
            }),
            ..Sandbox::new(SandboxConfig::default())
        };
        let post = Post {
            url: Arc::from(url.as_str()),
            body: Bytes::from_static(b"{}"),
            event: "sentMessageREAD_v2",
            local_message_id: "local-1".into(),
            phone: "911111111111".into(),
            generation: 0,
        };
        deliver(&sandbox, post).await;
        assert_eq!(sandbox.receipts_failed(), 1);
        assert_eq!(sandbox.receipts_posted(), 0);
        let receipts = sandbox.receipts();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].status, None);
        assert_eq!(receipts[0].attempts, 4);
        assert_eq!(receipts[0].event, "sentMessageREAD_v2");
    }
}
