//! Posts events to the app (`APP_WEBHOOK_URL`) as Standard Webhooks specifies
//! (standardwebhooks.com): the body `{"type","timestamp","data"}`, and the headers
//! `webhook-id` (the same on every attempt), `webhook-timestamp` (this attempt's, Unix
//! seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under each key of `APP_WEBHOOK_SECRET`, space-separated.
//! (Signed with aws-lc-rs's HMAC, already the api's, rather than the `standardwebhooks`
//! crate, whose dependencies would add a second HMAC stack; the tests check the result
//! with the official Python library.) A 2xx is delivered; anything else is tried again
//! on the retry schedule (`APP_WEBHOOK_RETRY_SECONDS`, never sooner than a 429's or
//! 503's `Retry-After`), the wait kept by a retry queue per attempt; after the last
//! attempt the event goes to its dead-letter queue. A 410 stops sending to that URL until
//! the setting names another. The endpoint's slowness stays here: events have their own
//! queue, consumers and bound on requests in flight.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otp_shared::events::{Envelope, EventsSettings};
use otp_shared::publisher::Publisher;
use otp_shared::redis::conn::RedisConn;
use otp_shared::redis::keys::Keys;
use reqwest::header::CONTENT_TYPE;

use crate::consumer::Handler;
use crate::delivery::{Outcome, Requeue};

/// Longest wait for the app to answer one event.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Posts the events queue's events.
pub struct EventSender {
    http: reqwest::Client,
    url: String,
    keys: Vec<hmac::Key>,
    retries: Vec<Duration>,
    publisher: Arc<Publisher>,
    redis: RedisConn,
    /// Set when the URL answered 410: nothing more goes to it.
    gone_key: String,
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// 410 Gone: the app wants no more events at this URL.
    Gone,
    /// Try again, not sooner than `not_before` (the endpoint's `Retry-After`).
    Failed {
        why: String,
        not_before: Option<Duration>,
    },
}

impl EventSender {
    pub fn new(
        settings: &EventsSettings,
        publisher: Arc<Publisher>,
        redis: RedisConn,
        keys: &Keys,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: crate::http_client::client(TIMEOUT).build()?,
            url: settings.url.clone(),
            keys: settings
                .keys
                .iter()
                .map(|key| hmac::Key::new(hmac::HMAC_SHA256, key))
                .collect(),
            retries: settings.retries.clone(),
            publisher,
            redis,
            gone_key: keys.app_webhook_gone(&settings.url),
        })
    }

    /// `webhook-signature` for `id`, `timestamp` and `body`: one signature per key.
    fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        self.keys
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(sign(key, id, timestamp, body))))
            .collect::<Vec<_>>()
            .join(" ")
    }

    async fn post(&self, envelope: &Envelope) -> Attempt {
        let body = envelope.event.body();
        let timestamp = otp_shared::now_ms() / 1000;
        let sent = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &envelope.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                self.signature(&envelope.id, timestamp, &body),
            )
            .body(body)
            .timeout(TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) if response.status().as_u16() == 410 => Attempt::Gone,
            Ok(response) => {
                let status = response.status().as_u16();
                let not_before = matches!(status, 429 | 503)
                    .then(|| crate::http_client::retry_after(&response))
                    .flatten();
                Attempt::Failed {
                    why: format!("HTTP {status}"),
                    not_before,
                }
            }
            Err(e) if e.is_timeout() => Attempt::Failed {
                why: "no answer in time".into(),
                not_before: None,
            },
            Err(_) => Attempt::Failed {
                why: "could not connect".into(),
                not_before: None,
            },
        }
    }

    async fn gone(&self) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(&self.gone_key)
            .query_async(&mut self.redis.clone())
            .await
    }

    async fn mark_gone(&self) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(&self.gone_key)
            .arg(otp_shared::now_ms())
            .exec_async(&mut self.redis.clone())
            .await
    }

    /// Counts an event's outcome.
    fn count(envelope: &Envelope, outcome: &'static str) {
        metrics::counter!(
            otp_shared::metrics::APP_EVENTS,
            "type" => envelope.event.kind.name(),
            "outcome" => outcome
        )
        .increment(1);
    }
}

/// The next attempt and its wait, from attempt `next` (2 and up) on: by the schedule,
/// and when the endpoint asked for a longer wait (`Retry-After`), the first later
/// attempt whose scheduled wait is that long, skipping the attempts in between (the
/// last when none is). Never a wait other than its queue's: RabbitMQ expires a queue's
/// messages only from its head, so one longer wait would hold back every event queued
/// behind it. `None` past the last attempt.
fn next_attempt(
    retries: &[Duration],
    next: u32,
    not_before: Option<Duration>,
) -> Option<(u32, Duration)> {
    let first = usize::try_from(next).ok()?.checked_sub(2)?;
    let later = retries.get(first..).filter(|later| !later.is_empty())?;
    let asked = not_before.unwrap_or_default();
    let index = later
        .iter()
        .position(|wait| *wait >= asked)
        .unwrap_or(later.len() - 1);
    let attempt = next.checked_add(u32::try_from(index).ok()?)?;
    Some((attempt, later[index]))
}

fn sign(key: &hmac::Key, id: &str, timestamp: u64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

impl Handler for EventSender {
    type Job = Envelope;

    async fn handle(&self, envelope: &Envelope) -> Outcome {
        match self.gone().await {
            Ok(true) => {
                Self::count(envelope, "gone");
                return Outcome::Dropped {
                    why: "the app's URL answered 410 Gone",
                };
            }
            Ok(false) => {}
            Err(e) => return Outcome::Requeue(Requeue::Redis(e)),
        }
        if envelope.attempt == 1 {
            let age_ms = otp_shared::now_ms().saturating_sub(event_ms(envelope));
            metrics::gauge!(otp_shared::metrics::APP_EVENT_AGE).set(age_ms as f64 / 1000.0);
        }
        match self.post(envelope).await {
            Attempt::Delivered => {
                Self::count(envelope, "delivered");
                let since_ms = otp_shared::now_ms().saturating_sub(event_ms(envelope));
                metrics::histogram!(otp_shared::metrics::APP_EVENT_LATENCY)
                    .record(since_ms as f64 / 1000.0);
                Outcome::Sent
            }
            Attempt::Gone => {
                Self::count(envelope, "gone");
                tracing::error!(url = %self.url, "the app's webhook answered 410 Gone: no more events go there until APP_WEBHOOK_URL changes");
                if let Err(e) = self.mark_gone().await {
                    return Outcome::Requeue(Requeue::Redis(e));
                }
                Outcome::Dropped {
                    why: "the app's URL answered 410 Gone",
                }
            }
            Attempt::Failed { why, not_before } => {
                let next = envelope.attempt.saturating_add(1);
                let Some((next, wait)) = next_attempt(&self.retries, next, not_before) else {
                    Self::count(envelope, "dead");
                    return Outcome::Failed {
                        reason: format!("every attempt failed, the last with {why}"),
                        by_sms: false,
                    };
                };
                let retry = Envelope {
                    attempt: next,
                    ..envelope.clone()
                };
                if let Err(e) = self.publisher.publish_event_retry(&retry, wait).await {
                    return Outcome::Requeue(Requeue::Broker(e));
                }
                Self::count(envelope, "retried");
                tracing::info!(event = %envelope.id, attempt = envelope.attempt, %why, wait_s = wait.as_secs(), "the app did not take an event; it is tried again");
                Outcome::Dropped {
                    why: "tried again later",
                }
            }
        }
    }

    fn delivers(&self) -> bool {
        false
    }
}

/// Reads how many events wait to be posted, every few seconds, for the
/// `otp_app_events_waiting` gauge, until `stop` turns true.
pub async fn watch_waiting(
    publisher: Arc<Publisher>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match publisher.ready_events().await {
            Ok(waiting) => {
                metrics::gauge!(otp_shared::metrics::APP_EVENTS_WAITING).set(waiting as f64);
            }
            Err(e) => tracing::debug!(error = %e, "could not read the events queue's depth"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// When the event happened (Unix ms), from its RFC 3339 time.
fn event_ms(envelope: &Envelope) -> u64 {
    time::OffsetDateTime::parse(
        &envelope.event.timestamp,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
    .and_then(|at| u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
    .unwrap_or_else(otp_shared::now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_gives_each_attempt_its_wait_and_honours_retry_after() {
        let secs = Duration::from_secs;
        let retries = [secs(5), secs(300), secs(1800)];
        assert_eq!(next_attempt(&retries, 2, None), Some((2, secs(5))));
        assert_eq!(next_attempt(&retries, 3, None), Some((3, secs(300))));
        assert_eq!(next_attempt(&retries, 5, None), None, "past the last");
        assert_eq!(
            next_attempt(&retries, 2, Some(secs(60))),
            Some((3, secs(300))),
            "not sooner than asked: the first later attempt that waits long enough"
        );
        assert_eq!(
            next_attempt(&retries, 3, Some(secs(60))),
            Some((3, secs(300)))
        );
        assert_eq!(
            next_attempt(&retries, 2, Some(secs(3600))),
            Some((4, secs(1800))),
            "longer than every wait: the last attempt, with its own wait"
        );
        assert_eq!(next_attempt(&retries, 2, Some(secs(5))), Some((2, secs(5))));
        assert_eq!(next_attempt(&retries, u32::MAX, None), None);
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's example: secret
        // whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id msg_p5jXN8AQM9LWM0D4loKWxJek,
        // timestamp 1614265330, body {"test": 2432232314}.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let tag = sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &key),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            STANDARD.encode(tag.as_ref()),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
