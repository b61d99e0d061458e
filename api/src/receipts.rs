//! WATI's delivery receipts (webhook events): what an event says, read defensively, and
//! applying it (or a Twilio status callback) to its send (`otp_shared::redis::receipts`). An event's `text` holds the
//! rendered message, and so the code: it is never read.

use otp_shared::phone::PhoneNumber;
use otp_shared::redis::fallback::Fallbacks;
use otp_shared::redis::keys::Delivery;
pub use otp_shared::redis::receipts::Applied;
pub use otp_shared::redis::receipts::CodeKept;
use otp_shared::redis::receipts::{Happened, ReceiptRecords, ReceiptUpdate};
use otp_shared::redis::{Keys, RedisConn};
use serde_json::Value as Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::sms::SmsReceipt;

/// WhatsApp's texts are kept to this many characters.
const MAX_TEXT_CHARS: usize = 256;
/// Meta's error codes that get their own metric label; others count as `other`, so a
/// caller cannot grow the label set.
const KNOWN_FAILED_CODES: &[&str] = &[
    "130429", "131000", "131005", "131008", "131009", "131016", "131021", "131026", "131031",
    "131042", "131045", "131047", "131049", "131051", "131052", "131053", "131056", "132000",
    "132001", "132005", "132007", "132012", "132015", "132016", "133010", "135000",
];
/// The reason a failure receipt gives when WhatsApp gave no detail.
const DEFAULT_FAILURE: &str = "WhatsApp could not deliver the message";

/// What an event says happened to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Sent,
    Delivered,
    Read,
    Failed {
        code: String,
        reason: String,
    },
    /// An event type this service does not follow.
    Other,
}

impl Event {
    /// Every value of [`Event::label`].
    pub const LABELS: [&'static str; 5] = ["sent", "delivered", "read", "failed", "other"];

    /// The `event` label of the receipt counter.
    pub fn label(&self) -> &'static str {
        match self {
            Event::Sent => "sent",
            Event::Delivered => "delivered",
            Event::Read => "read",
            Event::Failed { .. } => "failed",
            Event::Other => "other",
        }
    }
}

/// One webhook event, as far as it concerns a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub event: Event,
    /// `localMessageId`: the send's request id, when it is one of ours.
    pub request_id: Option<Uuid>,
    /// `waId`: the phone, when it reads as one. It names the code record at once;
    /// the send's own phone is checked against it.
    pub phone: Option<PhoneNumber>,
    /// When it happened (Unix ms): the event's `timestamp` or `created`, else now.
    pub at_ms: u64,
    /// `whatsappMessageId`: WhatsApp's id of the message, one per message sent.
    pub message_id: Option<String>,
}

/// The body is not a JSON object with an `eventType`.
#[derive(Debug, thiserror::Error)]
#[error("not a WATI webhook event")]
pub struct Malformed;

fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// A text or a number, as text (WATI sends codes and timestamps either way).
fn text_of(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How far in the past a receipt's own time is believed: WATI retries a receipt for a
/// day. An older (or future) time is taken as the time it arrived.
const MAX_RECEIPT_AGE_MS: u64 = 2 * 24 * 3600 * 1000;

/// When the event happened, in Unix ms: its `timestamp` (Unix seconds, or ms if it is
/// that large) or its `created` (RFC 3339), if that is within the last two days and not
/// after the event arrived (`now`); otherwise `now`. A time in whole seconds lies
/// somewhere in that second and not after the event arrived: the later of the two
/// bounds is kept, so that a delivery in the second its send was accepted does not read
/// as before the acceptance.
fn time_ms(event: &serde_json::Map<String, Json>, now: u64) -> u64 {
    let stated = if let Some(stamp) = text_of(event.get("timestamp"))
        && let Ok(n) = stamp.trim().parse::<u64>()
    {
        Some(if n > 10_000_000_000 {
            n
        } else {
            n.saturating_mul(1000)
                .saturating_add(999)
                .min(now)
                .max(n.saturating_mul(1000))
        })
    } else {
        event
            .get("created")
            .and_then(Json::as_str)
            .and_then(|created| OffsetDateTime::parse(created, &Rfc3339).ok())
            .and_then(|at| u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
    };
    // A time the sender made up (1e17, or 1970) would break the status's arithmetic
    // and the latency metrics: only a believable one is kept.
    stated
        .filter(|at| *at <= now && now - *at <= MAX_RECEIPT_AGE_MS)
        .unwrap_or(now)
}

impl Receipt {
    /// Reads one event. Anything that is a JSON object with an `eventType` text is an
    /// event (known or not); anything else is malformed.
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        Self::parse_at(body, otp_shared::now_ms())
    }

    /// [`Receipt::parse`], for an event that arrived at `now` (Unix ms).
    fn parse_at(body: &[u8], now: u64) -> Result<Self, Malformed> {
        let value: Json = serde_json::from_slice(body).map_err(|_| Malformed)?;
        let event = value.as_object().ok_or(Malformed)?;
        let kind = event
            .get("eventType")
            .and_then(Json::as_str)
            .ok_or(Malformed)?;
        let event_kind = match kind {
            "templateMessageSent_v2" | "templateMessageSent_v2_bsuid" => Event::Sent,
            "sentMessageDELIVERED_v2" => Event::Delivered,
            "sentMessageREAD_v2" => Event::Read,
            "templateMessageFailed" => Event::Failed {
                code: text_of(event.get("failedCode"))
                    .map(|c| clip(c.trim()))
                    .unwrap_or_default(),
                reason: event
                    .get("failedDetail")
                    .and_then(Json::as_str)
                    .filter(|d| !d.trim().is_empty())
                    .map_or_else(|| DEFAULT_FAILURE.to_owned(), clip),
            },
            _ => Event::Other,
        };
        Ok(Receipt {
            event: event_kind,
            request_id: event
                .get("localMessageId")
                .and_then(Json::as_str)
                .and_then(|id| Uuid::parse_str(id).ok()),
            phone: event
                .get("waId")
                .and_then(Json::as_str)
                .and_then(|p| PhoneNumber::from_e164_digits(p.trim_start_matches('+')).ok()),
            at_ms: time_ms(event, now),
            message_id: event
                .get("whatsappMessageId")
                .and_then(Json::as_str)
                .filter(|id| !id.trim().is_empty())
                .map(clip),
        })
    }
}

/// The `failed_code` label of a failure receipt: a known Meta code, or `other`.
pub fn failed_code_label(code: &str) -> &'static str {
    KNOWN_FAILED_CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("other")
}

/// Applies receipts to their sends.
#[derive(Clone)]
pub struct ReceiptStore {
    records: ReceiptRecords,
    fallbacks: Fallbacks,
}

impl ReceiptStore {
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self {
            records: ReceiptRecords::new(redis.clone(), keys.clone()),
            fallbacks: Fallbacks::new(redis, keys),
        }
    }

    /// Deletes the code of `job`'s send that failed for good, as a failure receipt does
    /// when nothing carries the code on.
    pub async fn retire_code(&self, job: &otp_shared::job::SendJob) -> redis::RedisResult<()> {
        self.fallbacks.retire_code(&job.phone, job.request_id).await
    }

    /// Applies WATI's `receipt` to its send, if it names one of ours and an event it
    /// follows. `code` says what a failure does with the code: delete it, keep it for
    /// the caller (which sends it by SMS or retires it), or reroute its send.
    pub async fn apply(&self, receipt: &Receipt, code: CodeKept) -> redis::RedisResult<Applied> {
        let (Some(happened), Some(request_id)) = (happened(&receipt.event), receipt.request_id)
        else {
            return Ok(Applied::UnknownSend);
        };
        self.records
            .apply(&ReceiptUpdate {
                request_id,
                delivery: Delivery::First,
                code,
                phone: receipt.phone.as_ref(),
                happened,
                at_ms: receipt.at_ms,
                message_id: receipt.message_id.as_deref(),
            })
            .await
    }

    /// Applies a Twilio status callback to the SMS delivery it names. Twilio's
    /// callbacks carry no time of their own: the event is taken as happening when it
    /// arrived, `arrived_at_ms` (Unix ms). A
    /// fallback's failure leaves the code alone: the WhatsApp message it stood in for
    /// may still arrive (a late receipt, a phone back online), and the code lapses at
    /// its expiry.
    pub async fn apply_sms(
        &self,
        receipt: &SmsReceipt,
        arrived_at_ms: u64,
    ) -> redis::RedisResult<Applied> {
        let Some(happened) = happened(&receipt.event) else {
            return Ok(Applied::UnknownSend);
        };
        self.records
            .apply(&ReceiptUpdate {
                request_id: receipt.request_id,
                delivery: receipt.delivery,
                code: if receipt.delivery == Delivery::Fallback {
                    CodeKept::Keep
                } else {
                    CodeKept::Delete
                },
                phone: receipt.phone.as_ref(),
                happened,
                at_ms: arrived_at_ms,
                message_id: None,
            })
            .await
    }
}

/// What an event means for its send, if it is one this service follows.
fn happened(event: &Event) -> Option<Happened<'_>> {
    match event {
        Event::Sent => Some(Happened::Sent),
        Event::Delivered => Some(Happened::Delivered),
        Event::Read => Some(Happened::Read),
        Event::Failed { code, reason } => Some(Happened::Failed { code, reason }),
        Event::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_list_holds_every_events_label() {
        let events = [
            Event::Sent,
            Event::Delivered,
            Event::Read,
            Event::Failed {
                code: String::new(),
                reason: String::new(),
            },
            Event::Other,
        ];
        let events: Vec<&str> = events.iter().map(Event::label).collect();
        assert_eq!(events, Event::LABELS);
    }

    #[test]
    fn watis_events_are_read_as_documented() {
        let id = Uuid::new_v4();
        let delivered = format!(
            r#"{{"eventType":"sentMessageDELIVERED_v2","statusString":"Delivered","localMessageId":"{id}","timestamp":"1765791326","text":null}}"#
        );
        // Received a minute after WATI's documented example times.
        let delivered_now = 1_765_791_386_000;
        assert_eq!(
            Receipt::parse_at(delivered.as_bytes(), delivered_now).expect("an event"),
            Receipt {
                event: Event::Delivered,
                request_id: Some(id),
                phone: None,
                // A second long past: its last millisecond.
                at_ms: 1_765_791_326_999,
                message_id: None,
            }
        );
        let sent = format!(
            r#"{{"eventType":"templateMessageSent_v2_bsuid","localMessageId":"{id}","created":"2023-03-11T14:27:32.965Z","text":"Your code is 123456"}}"#
        );
        let sent = Receipt::parse_at(sent.as_bytes(), 1_678_544_912_965).expect("an event");
        assert_eq!((sent.event, sent.at_ms), (Event::Sent, 1_678_544_852_965));
        let failed = br#"{"eventType":"templateMessageFailed","localMessageId":"nope","failedCode":131026,"failedDetail":"Message undeliverable"}"#;
        let failed = Receipt::parse(failed).expect("an event");
        assert_eq!(
            failed.event,
            Event::Failed {
                code: "131026".into(),
                reason: "Message undeliverable".into()
            }
        );
        assert_eq!(failed.request_id, None);
    }

    #[test]
    fn a_time_in_whole_seconds_is_read_as_late_in_its_second_but_never_in_the_future() {
        let event = |stamp: &str| {
            serde_json::json!({"timestamp": stamp})
                .as_object()
                .cloned()
                .expect("an object")
        };
        assert_eq!(time_ms(&event("1000"), 1_000_400), 1_000_400);
        assert_eq!(time_ms(&event("1000"), 5_000_000), 1_000_999);
        let now = 1_795_580_000_500;
        assert_eq!(time_ms(&event("1795580000123"), now), 1_795_580_000_123);
    }

    #[test]
    fn a_time_from_the_future_or_long_ago_is_taken_as_now() {
        let event = |stamp: &str| {
            serde_json::json!({"timestamp": stamp})
                .as_object()
                .cloned()
                .expect("an object")
        };
        let now = 1_795_580_000_000;
        for made_up in [
            "100000000000000000",
            "18446744073709551615",
            "1",
            "1795580000001",
        ] {
            assert_eq!(time_ms(&event(made_up), now), now, "{made_up}");
        }
        let day_ago = (now - 24 * 3600 * 1000).to_string();
        assert_eq!(time_ms(&event(&day_ago), now), now - 24 * 3600 * 1000);
    }

    #[test]
    fn unknown_events_are_events_and_non_events_are_malformed() {
        let other = Receipt::parse(br#"{"eventType":"messageReceived"}"#).expect("an event");
        assert_eq!(other.event, Event::Other);
        for body in [
            &b"[]"[..],
            b"\"text\"",
            b"{}",
            b"{\"eventType\":7}",
            b"not json",
        ] {
            assert!(
                Receipt::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn only_known_failed_codes_become_labels() {
        assert_eq!(failed_code_label("131026"), "131026");
        assert_eq!(failed_code_label("999999"), "other");
        assert_eq!(failed_code_label("131026; DROP"), "other");
    }
}
