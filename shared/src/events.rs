//! Events to the app (Standard Webhooks, standardwebhooks.com): what happened to a send,
//! a code, a user or a session, told to `APP_WEBHOOK_URL`. Both processes emit them
//! (the worker what its deliveries do, the api what receipts, logins and logouts do) by
//! publishing to the events queue; the workers post them, signed, with retries. An
//! event's id is made from what it tells (the request and the fact), so telling the same
//! fact twice (a job redelivered after a crash) gives the same `webhook-id`, which
//! receivers de-duplicate. No event holds a code or a token.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::config::ConfigError;
use crate::phone::PhoneNumber;

/// The kinds of event, by their `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "otp.sent")]
    OtpSent,
    #[serde(rename = "otp.delivered")]
    OtpDelivered,
    #[serde(rename = "otp.read")]
    OtpRead,
    #[serde(rename = "otp.failed")]
    OtpFailed,
    #[serde(rename = "otp.fallback")]
    OtpFallback,
    #[serde(rename = "otp.expired")]
    OtpExpired,
    #[serde(rename = "otp.verified")]
    OtpVerified,
    #[serde(rename = "otp.locked")]
    OtpLocked,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "session.revoked")]
    SessionRevoked,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::OtpSent,
        EventType::OtpDelivered,
        EventType::OtpRead,
        EventType::OtpFailed,
        EventType::OtpFallback,
        EventType::OtpExpired,
        EventType::OtpVerified,
        EventType::OtpLocked,
        EventType::UserCreated,
        EventType::SessionRevoked,
    ];

    /// Its `type`, and the metrics' `type` label.
    pub fn name(self) -> &'static str {
        match self {
            EventType::OtpSent => "otp.sent",
            EventType::OtpDelivered => "otp.delivered",
            EventType::OtpRead => "otp.read",
            EventType::OtpFailed => "otp.failed",
            EventType::OtpFallback => "otp.fallback",
            EventType::OtpExpired => "otp.expired",
            EventType::OtpVerified => "otp.verified",
            EventType::OtpLocked => "otp.locked",
            EventType::UserCreated => "user.created",
            EventType::SessionRevoked => "session.revoked",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// What an event is about; only what applies is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// `whatsapp` or `sms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// The provider's failure code (WhatsApp's, Twilio's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_code: Option<String>,
    /// Why: a failure's reason, a fallback's trigger, a session's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A fallback's channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One event: what the app receives is its `type`, `timestamp` and `data`; `id` is the
/// `webhook-id` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    pub data: EventData,
}

impl Event {
    /// An event about send `request_id` to `phone` on `channel`, happening at `at_ms`.
    pub fn about_send(
        kind: EventType,
        request_id: Uuid,
        phone: &PhoneNumber,
        channel: &str,
        at_ms: u64,
    ) -> Self {
        Self::new(
            kind,
            format!("{}_{channel}", request_id.simple()),
            at_ms,
            EventData {
                request_id: Some(request_id),
                phone: Some(phone.as_str().to_owned()),
                channel: Some(channel.to_owned()),
                ..EventData::default()
            },
        )
    }

    /// An event about the code of `phone` (verified, locked), told once per `subject`
    /// (the code's id).
    pub fn about_code(kind: EventType, subject: Uuid, phone: &PhoneNumber, at_ms: u64) -> Self {
        Self::new(
            kind,
            subject.simple().to_string(),
            at_ms,
            EventData {
                phone: Some(phone.as_str().to_owned()),
                ..EventData::default()
            },
        )
    }

    /// An event about user `user_id` (and session `session_id`, when it is about one).
    pub fn about_user(
        kind: EventType,
        user_id: Uuid,
        session_id: Option<Uuid>,
        phone: Option<&str>,
        at_ms: u64,
    ) -> Self {
        let subject = session_id.unwrap_or(user_id).simple().to_string();
        Self::new(
            kind,
            subject,
            at_ms,
            EventData {
                user_id: Some(user_id),
                session_id,
                phone: phone.map(str::to_owned),
                ..EventData::default()
            },
        )
    }

    fn new(kind: EventType, subject: String, at_ms: u64, data: EventData) -> Self {
        // One fact, one id: `msg_`, its subject and its type, without the dot that
        // separates the parts of the signed content.
        let id = format!("msg_{subject}_{}", kind.name().replace('.', "_"));
        Self {
            id,
            kind,
            timestamp: rfc3339(at_ms),
            data,
        }
    }

    /// With `reason` set.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.data.reason = Some(reason.into());
        self
    }

    /// With more of `data` set.
    pub fn with(mut self, fill: impl FnOnce(&mut EventData)) -> Self {
        fill(&mut self.data);
        self
    }

    /// The body the app receives.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An event on its way, as the events queue carries it: the event, its id and the
/// attempt it is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub event: Event,
}

impl Envelope {
    pub const VERSION: u32 = 1;

    pub fn first(event: Event) -> Self {
        Self {
            v: Self::VERSION,
            id: event.id.clone(),
            attempt: 1,
            event,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::job::JobError> {
        let mut envelope: Self =
            serde_json::from_slice(bytes).map_err(crate::job::JobError::Malformed)?;
        if envelope.v != Self::VERSION {
            return Err(crate::job::JobError::UnknownVersion(envelope.v));
        }
        envelope.event.id = envelope.id.clone();
        Ok(envelope)
    }
}

/// Tells the app what happened: publishes the events it wants to the events queue.
#[derive(Clone)]
pub struct Emitter {
    publisher: std::sync::Arc<crate::publisher::Publisher>,
    wanted: Vec<EventType>,
}

impl Emitter {
    pub fn new(
        publisher: std::sync::Arc<crate::publisher::Publisher>,
        settings: &EventsSettings,
    ) -> Self {
        Self {
            publisher,
            wanted: settings.wanted.clone(),
        }
    }

    /// Queues `event` if the app wants its type. An error means it is not queued: the
    /// caller hands its job back (its next delivery tells it again), or gives up on it.
    pub async fn emit(&self, event: Event) -> Result<(), crate::publisher::PublishError> {
        if !self.wanted.contains(&event.kind) {
            return Ok(());
        }
        let kind = event.kind;
        let queued = self.publisher.publish_event(&Envelope::first(event)).await;
        if queued.is_err() {
            metrics::counter!(crate::metrics::APP_EVENTS, "type" => kind.name(), "outcome" => "not_queued")
                .increment(1);
        }
        queued
    }

    /// [`Emitter::emit`], for a caller that cannot hand anything back: a failure is
    /// logged and counted.
    pub async fn emit_or_log(&self, event: Event) {
        let kind = event.kind;
        if let Err(e) = self.emit(event).await {
            tracing::warn!(error = %e, event = kind.name(), "could not queue an event to the app");
        }
    }
}

fn rfc3339(unix_ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The event settings both processes read.
#[derive(clap::Args, Clone, Debug)]
pub struct EventsArgs {
    /// Where events go (Standard Webhooks); none: no events.
    #[arg(long, env = "APP_WEBHOOK_URL")]
    pub app_webhook_url: Option<String>,
    /// `whsec_` and base64 of at least 24 bytes; several comma-separated while rotating:
    /// the first signs, each adds a signature.
    #[arg(long, env = "APP_WEBHOOK_SECRET", hide_env_values = true)]
    pub app_webhook_secret: Option<String>,
    /// The event types to send, comma-separated; empty: all.
    #[arg(long, env = "APP_WEBHOOK_EVENTS", default_value = "")]
    pub app_webhook_events: String,
    /// Seconds before each attempt after the first, comma-separated (at most 7).
    #[arg(
        long,
        env = "APP_WEBHOOK_RETRY_SECONDS",
        default_value = "5,300,1800,7200,18000,36000,36000"
    )]
    pub app_webhook_retry_seconds: String,
}

/// Events, when they are on.
#[derive(Clone)]
pub struct EventsSettings {
    pub url: String,
    /// The keys, the first signing.
    pub keys: Vec<Vec<u8>>,
    pub wanted: Vec<EventType>,
    /// The wait before each attempt after the first.
    pub retries: Vec<std::time::Duration>,
}

impl std::fmt::Debug for EventsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsSettings")
            .field("url", &self.url)
            .field("wanted", &self.wanted)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Most attempts after the first: the retry queues are made for this many.
pub const MAX_RETRIES: usize = 7;
/// Fewest bytes of an events key (Standard Webhooks asks for 24 to 64).
const MIN_KEY_BYTES: usize = 24;

impl EventsArgs {
    /// `None` when events are off.
    pub fn validate(self, dev_mode: bool) -> Result<Option<EventsSettings>, ConfigError> {
        let Some(url) = self
            .app_webhook_url
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let parsed = url::Url::parse(&url).map_err(|_| ConfigError::Invalid {
            name: "APP_WEBHOOK_URL",
            problem: "is not a URL",
        })?;
        let loopback = parsed.host_str().is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match parsed.scheme() {
            "https" => {}
            "http" if loopback || dev_mode => {}
            _ => {
                return Err(ConfigError::Invalid {
                    name: "APP_WEBHOOK_URL",
                    problem: "must be https (http only to this machine, or with DEV_MODE=true)",
                });
            }
        }
        let secrets = self
            .app_webhook_secret
            .filter(|s| !s.trim().is_empty())
            .ok_or(ConfigError::Missing("APP_WEBHOOK_SECRET"))?;
        let keys = secrets
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(key_of)
            .collect::<Option<Vec<_>>>()
            .filter(|keys| !keys.is_empty())
            .ok_or(ConfigError::Invalid {
                name: "APP_WEBHOOK_SECRET",
                problem: "must be whsec_ and base64 of at least 24 bytes (several comma-separated)",
            })?;
        let wanted = if self.app_webhook_events.trim().is_empty() {
            EventType::ALL.to_vec()
        } else {
            self.app_webhook_events
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(EventType::parse)
                .collect::<Option<Vec<_>>>()
                .ok_or(ConfigError::Invalid {
                    name: "APP_WEBHOOK_EVENTS",
                    problem: "must be event types separated by commas, such as otp.sent,user.created",
                })?
        };
        let retries = self
            .app_webhook_retry_seconds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().ok().filter(|n| *n > 0))
            .collect::<Option<Vec<_>>>()
            .filter(|r| r.len() <= MAX_RETRIES)
            .ok_or(ConfigError::Invalid {
                name: "APP_WEBHOOK_RETRY_SECONDS",
                problem: "must be at most 7 waits in whole seconds (each at least 1), comma-separated",
            })?
            .into_iter()
            .map(std::time::Duration::from_secs)
            .collect();
        Ok(Some(EventsSettings {
            url,
            keys,
            wanted,
            retries,
        }))
    }
}

/// The key of a `whsec_` secret.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let encoded = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|key| key.len() >= MIN_KEY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> PhoneNumber {
        PhoneNumber::from_e164_digits("919876543210").expect("phone")
    }

    #[test]
    fn one_fact_has_one_id_and_the_body_holds_no_id() {
        let request = Uuid::new_v4();
        let sent = Event::about_send(EventType::OtpSent, request, &phone(), "whatsapp", 0);
        let again = Event::about_send(EventType::OtpSent, request, &phone(), "whatsapp", 5);
        assert_eq!(sent.id, again.id);
        assert!(!sent.id.contains('.'), "{}", sent.id);
        let by_sms = Event::about_send(EventType::OtpSent, request, &phone(), "sms", 0);
        assert_ne!(sent.id, by_sms.id);
        let body: serde_json::Value = serde_json::from_slice(&sent.body()).expect("json");
        assert_eq!(body["type"], "otp.sent");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(body["data"]["phone"], "919876543210");
        assert!(body.get("id").is_none());
        assert!(body["data"].get("userId").is_none(), "only what applies");
        let envelope = Envelope::first(sent.clone());
        assert_eq!(Envelope::decode(&envelope.encode()).ok(), Some(envelope));
    }

    #[test]
    fn events_are_off_without_a_url_and_checked_with_one() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            events: EventsArgs,
        }
        let settings = |args: &[&str]| {
            let mut all = vec!["test"];
            all.extend_from_slice(args);
            Args::try_parse_from(all)
                .expect("parses")
                .events
                .validate(false)
        };
        assert!(settings(&[]).expect("valid").is_none());
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let on = settings(&[
            "--app-webhook-url",
            "https://app.example/hooks",
            "--app-webhook-secret",
            secret,
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(on.wanted.len(), 10);
        assert_eq!(on.retries.len(), 7);
        assert_eq!(
            settings(&["--app-webhook-url", "https://app.example/hooks"]).err(),
            Some(ConfigError::Missing("APP_WEBHOOK_SECRET"))
        );
        for bad in [
            "whsec_c2hvcnQ=",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!",
        ] {
            assert!(
                settings(&[
                    "--app-webhook-url",
                    "https://a.example",
                    "--app-webhook-secret",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
        assert!(
            settings(&[
                "--app-webhook-url",
                "http://app.example/h",
                "--app-webhook-secret",
                secret
            ])
            .is_err(),
            "plain http to another machine"
        );
        assert!(
            settings(&[
                "--app-webhook-url",
                "http://127.0.0.1:9/h",
                "--app-webhook-secret",
                secret
            ])
            .is_ok()
        );
        let some = settings(&[
            "--app-webhook-url",
            "https://a.example",
            "--app-webhook-secret",
            secret,
            "--app-webhook-events",
            "otp.sent,user.created",
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(some.wanted, [EventType::OtpSent, EventType::UserCreated]);
        assert!(
            settings(&[
                "--app-webhook-url",
                "https://a.example",
                "--app-webhook-secret",
                secret,
                "--app-webhook-events",
                "otp.sent,otp.maybe"
            ])
            .is_err()
        );
    }
}
