//! What the sandbox remembers of the events posted to the app's webhook
//! (`app_webhook.rs`): every delivery attempt in arrival order, verified or not, the
//! answers scripted for the next verified ones, and how many attempts each `webhook-id`
//! has had.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::standard_webhooks::{AppWebhookRejection, SignatureMatch};

/// An answer scripted for the next verified delivery to the app's webhook, used once,
/// in order; after the script, deliveries are answered 204.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedAppAnswer {
    /// The HTTP status (default 204): 500 or 503 to be retried, 410 for "stop sending"
    /// (the spec's meaning), 429 to be throttled. Outside 200 to 599 it is answered 500
    /// (`POST /sandbox/script-app-webhook` refuses such a status).
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After`, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering: longer than the sender's timeout, an endpoint
    /// that hangs.
    #[serde(default)]
    pub hang_ms: Option<u64>,
}

/// One delivery attempt to `POST /sandbox/app-webhook`, whatever it was answered.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEventRecord {
    /// 1 for the first attempt after start or reset, then one more per attempt.
    pub seq: u64,
    /// The `webhook-id` header as received: the event's id, the same on every retry.
    pub webhook_id: Option<String>,
    /// The `webhook-timestamp` header as received: when this attempt was made.
    pub webhook_timestamp: Option<String>,
    /// The `webhook-signature` header as received.
    pub webhook_signature: Option<String>,
    /// The body's `type`, when it is JSON with a string there.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The body's `timestamp` (when the event happened), as sent.
    pub timestamp: Option<Value>,
    /// The body's `data`, as sent.
    pub data: Option<Value>,
    /// The body as text (the first 1,024 bytes), only when it is not JSON.
    pub unparsed_body: Option<String>,
    /// Signed right, timely, and an event: the app would act on it.
    pub verified: bool,
    /// Why not, when not verified.
    pub reason: Option<AppWebhookRejection>,
    /// The signatures that verified (more than one when the sender signs with several
    /// secrets the sandbox also holds).
    pub matched: Vec<SignatureMatch>,
    pub received_at_ms: u64,
    /// The HTTP status answered (or being held back, while a scripted hang lasts).
    pub status: u16,
    /// The `Retry-After` answered, in seconds.
    pub retry_after: Option<u64>,
    /// The scripted hang before the answer.
    pub hang_ms: Option<u64>,
    /// When the answer went out; `None` while it is held back, or if the sender hung up
    /// first (then `callerLeft`).
    pub answered_at_ms: Option<u64>,
    /// The sender closed the request before the answer (its timeout, during a hang).
    pub caller_left: bool,
    /// Which attempt at its `webhook-id` this is: 1 for the first, 2 for the first
    /// retry, … (counting every attempt, verified or not); 1 without an id.
    pub attempt: u32,
}

/// The app webhook's log; part of `Recorded`, under its lock.
#[derive(Default)]
pub(crate) struct AppLog {
    scripts: VecDeque<ScriptedAppAnswer>,
    /// In arrival order; a record's index is its `seq` less 1.
    events: Vec<AppEventRecord>,
    verified: u64,
    attempts: HashMap<String, u32>,
}

impl AppLog {
    pub fn script(&mut self, answers: Vec<ScriptedAppAnswer>) {
        self.scripts.extend(answers);
    }

    /// The answer for a verified delivery: the next scripted one, or the default.
    pub fn next_answer(&mut self) -> ScriptedAppAnswer {
        self.scripts.pop_front().unwrap_or_default()
    }

    /// Files an attempt, numbering it and counting it against its id; answers its `seq`.
    pub fn record(&mut self, mut event: AppEventRecord) -> u64 {
        event.seq = self.events.len() as u64 + 1;
        event.attempt = match &event.webhook_id {
            Some(id) => {
                let attempts = self.attempts.entry(id.clone()).or_default();
                *attempts += 1;
                *attempts
            }
            None => 1,
        };
        if event.verified {
            self.verified += 1;
        }
        let seq = event.seq;
        self.events.push(event);
        seq
    }

    /// Notes that the answer to attempt `seq` went out at `at_ms`, or (`None`) that the
    /// sender left before it.
    pub fn answered(&mut self, seq: u64, at_ms: Option<u64>) {
        let Some(event) = seq
            .checked_sub(1)
            .and_then(|i| self.events.get_mut(usize::try_from(i).ok()?))
        else {
            return;
        };
        match at_ms {
            Some(at_ms) => event.answered_at_ms = Some(at_ms),
            None => event.caller_left = true,
        }
    }

    pub fn events(&self) -> Vec<AppEventRecord> {
        self.events.clone()
    }

    /// The last `n` attempts, in arrival order.
    pub fn latest(&self, n: usize) -> Vec<AppEventRecord> {
        self.events[self.events.len().saturating_sub(n)..].to_vec()
    }

    /// Attempts received, verified or not.
    pub fn received(&self) -> u64 {
        self.events.len() as u64
    }

    pub fn verified(&self) -> u64 {
        self.verified
    }
}
