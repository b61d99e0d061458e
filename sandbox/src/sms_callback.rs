//! Twilio's status callbacks for an accepted SMS: which statuses are posted, when, with
//! which parameters, signed with `X-Twilio-Signature`; one small task a message walks
//! through them.
//!
//! Modelled on:
//! - https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks
//!   and the Message resource (https://www.twilio.com/docs/messaging/api/message-resource):
//!   a form-encoded POST to the message's `StatusCallback` for each later status, none for
//!   the first (`queued`/`accepted`): `sent` then `delivered` or `undelivered`, or
//!   `failed` without `sent`, with `MessageSid`, `MessageStatus`, `ErrorCode` (only on
//!   `undelivered` and `failed`), `AccountSid`, `From`, `To`, and `SmsSid`, `SmsStatus`,
//!   `ApiVersion` as receivers see them.
//! - `RawDlrDoneDate` (`YYMMDDhhmm`) on `delivered` and `undelivered`:
//!   https://www.twilio.com/en-us/changelog/addition-of-rawdlrdonedate-to-delivered-and-undelivered-status-webhooks
//! - 30036 when a message waits in the queue past its `ValidityPeriod`:
//!   https://www.twilio.com/docs/api/errors/30036
//! - The signature: `signature.rs`.
//!
//! Assumptions (no Twilio page says): `sent` at once, or when the scripted queue time is
//! over; the final status a fixed time after it (`SANDBOX_SMS_DELIVERED_AFTER_MS`); a
//! `failed` message's callback at that same time; the sender a Messaging Service picks is
//! `+15005550006` (Twilio's test number); one retry, 1 s later, only when the receiver
//! could not be reached or did not answer within 5 s (Twilio's connection overrides default
//! to one retry, https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides,
//! but whether status callbacks use them is not documented); an answer of any status ends
//! the posting. Callbacks are posted once each and in order (real ones may repeat or cross).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::send::now_ms;
use crate::signature::twilio_signature;
use crate::sms_record::SmsCallbackRecord;
use crate::twilio::{self, API_VERSION, code};
use crate::webhook::{Payload, is_2xx};
use crate::{Sandbox, form};

/// The sender a Messaging Service is taken to pick (Twilio's test number).
pub(crate) const SERVICE_SENDER: &str = "+15005550006";
/// Wait before the one retry of a callback that reached nobody.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// How the sandbox paces the status callbacks of the SMS it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsSettings {
    /// From `sent` to the final status (`delivered`, `undelivered`, `failed`).
    pub delivered_after: Duration,
}

impl Default for SmsSettings {
    /// The final status 300 ms after `sent`.
    fn default() -> Self {
        Self {
            delivered_after: Duration::from_millis(300),
        }
    }
}

/// The last status an accepted message reaches, with its `ErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Final {
    Delivered,
    Undelivered(u32),
    Failed(u32),
    /// No callback at all.
    Silent,
}

/// What becomes of an accepted message, as its script says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub final_status: Final,
    /// Time in Twilio's queue before it is sent.
    pub queued: Duration,
}

/// One callback: `MessageStatus` and its `ErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Sent,
    Delivered,
    Undelivered(u32),
    Failed(u32),
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered(_) => "undelivered",
            Self::Failed(_) => "failed",
        }
    }

    fn error_code(self) -> Option<u32> {
        match self {
            Self::Undelivered(code) | Self::Failed(code) => Some(code),
            Self::Sent | Self::Delivered => None,
        }
    }

    /// The statuses whose callbacks carry the carrier's `RawDlrDoneDate`.
    fn has_done_date(self) -> bool {
        matches!(self, Self::Delivered | Self::Undelivered(_))
    }
}

/// The callbacks a message gets, each with its time after acceptance, in posting order.
/// A message queued past its validity period fails with 30036 when the period ends.
pub(crate) fn timeline(
    plan: Plan,
    delivered_after: Duration,
    validity: Option<Duration>,
) -> Vec<(Duration, Status)> {
    let sent_at = plan.queued;
    let done_at = sent_at + delivered_after;
    match (plan.final_status, validity) {
        (Final::Silent, _) => Vec::new(),
        (_, Some(validity)) if plan.queued > validity => {
            vec![(validity, Status::Failed(code::VALIDITY_PERIOD_EXPIRED))]
        }
        (Final::Failed(code), _) => vec![(done_at, Status::Failed(code))],
        (Final::Delivered, _) => vec![(sent_at, Status::Sent), (done_at, Status::Delivered)],
        (Final::Undelivered(code), _) => {
            vec![
                (sent_at, Status::Sent),
                (done_at, Status::Undelivered(code)),
            ]
        }
    }
}

/// An accepted message with a `StatusCallback`, owed its callbacks.
pub(crate) struct Accepted {
    pub sid: String,
    pub account_sid: String,
    /// `From`, or the sender the Messaging Service picked.
    pub from: String,
    pub to: String,
    /// The digits of `To`, under which the sandbox files it.
    pub phone: String,
    pub messaging_service_sid: Option<String>,
    pub url: String,
    pub plan: Plan,
    pub validity: Option<Duration>,
    /// The sandbox's life it was accepted in: its callbacks are not recorded after a reset.
    pub generation: u64,
}

impl Accepted {
    /// The parameters of one callback, in the order posted.
    fn params(&self, status: Status, now_ms: u64) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("MessageSid", self.sid.clone()),
            ("MessageStatus", status.as_str().to_owned()),
            ("SmsSid", self.sid.clone()),
            ("SmsStatus", status.as_str().to_owned()),
            ("AccountSid", self.account_sid.clone()),
            ("From", self.from.clone()),
            ("To", self.to.clone()),
            ("ApiVersion", API_VERSION.to_owned()),
        ];
        if let Some(service) = &self.messaging_service_sid {
            params.push(("MessagingServiceSid", service.clone()));
        }
        if let Some(code) = status.error_code() {
            params.push(("ErrorCode", code.to_string()));
        }
        if status.has_done_date() {
            params.push(("RawDlrDoneDate", twilio::raw_dlr_done_date(now_ms)));
        }
        params
    }
}

/// Starts the callbacks of a message accepted just now, under the settings of this
/// moment. Returns at once.
pub(crate) fn schedule(sandbox: &Sandbox, message: Accepted) {
    let settings = sandbox.sms_settings();
    let events = timeline(message.plan, settings.delivered_after, message.validity);
    if events.is_empty() {
        return;
    }
    let accepted_at = Instant::now();
    let sandbox = sandbox.clone();
    let message = Arc::new(message);
    tokio::spawn(async move {
        for (after, status) in events {
            tokio::time::sleep_until((accepted_at + after).into()).await;
            deliver(&sandbox, &message, status).await;
        }
    });
}

/// Whether a callback that got `status` on attempt `attempts` is tried again: once, and
/// only when nobody answered.
fn retry(status: Option<u16>, attempts: u32) -> bool {
    status.is_none() && attempts < 2
}

/// Posts one callback, signed, retrying as [`retry`] says, then records the outcome.
async fn deliver(sandbox: &Sandbox, message: &Accepted, status: Status) {
    let params = message.params(status, now_ms());
    let pairs: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let signature = twilio_signature(&sandbox.config.twilio.auth_token, &message.url, &pairs);
    let payload = Payload {
        content_type: "application/x-www-form-urlencoded",
        headers: vec![("X-Twilio-Signature", signature.clone())],
        body: Bytes::from(form::encode(pairs.iter().copied())),
    };
    let mut attempts = 0;
    let (posted_at_ms, answered) = loop {
        attempts += 1;
        let (posted_at_ms, answered) = sandbox.webhook.attempt(&message.url, &payload).await;
        if !retry(answered, attempts) {
            break (posted_at_ms, answered);
        }
        tokio::time::sleep(RETRY_DELAY).await;
    };
    if !is_2xx(answered) {
        // No body and no phone: the body holds the number, which is personal.
        tracing::warn!(
            status = status.as_str(),
            answered,
            attempts,
            "a status callback was not taken"
        );
    }
    sandbox.recorded().record_sms_callback(
        message.generation,
        SmsCallbackRecord {
            message_sid: message.sid.clone(),
            message_status: status.as_str().to_owned(),
            error_code: status.error_code(),
            phone: message.phone.clone(),
            url: message.url.clone(),
            params: params
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect::<BTreeMap<_, _>>(),
            signature,
            posted_at_ms,
            status: answered,
            attempts,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn plan(final_status: Final, queued: u64) -> Plan {
        Plan {
            final_status,
            queued: ms(queued),
        }
    }

    #[test]
    fn a_delivered_message_is_sent_at_once_then_delivered() {
        assert_eq!(
            timeline(plan(Final::Delivered, 0), ms(300), None),
            [(ms(0), Status::Sent), (ms(300), Status::Delivered)]
        );
    }

    #[test]
    fn an_undelivered_message_is_sent_then_undelivered_with_its_code() {
        assert_eq!(
            timeline(
                plan(Final::Undelivered(30005), 0),
                ms(300),
                Some(ms(60_000))
            ),
            [(ms(0), Status::Sent), (ms(300), Status::Undelivered(30005))]
        );
    }

    #[test]
    fn a_failed_message_is_never_sent() {
        assert_eq!(
            timeline(plan(Final::Failed(30001), 0), ms(300), None),
            [(ms(300), Status::Failed(30001))]
        );
    }

    #[test]
    fn a_queued_message_is_sent_when_it_leaves_the_queue() {
        assert_eq!(
            timeline(plan(Final::Delivered, 2_000), ms(300), Some(ms(2_000))),
            [(ms(2_000), Status::Sent), (ms(2_300), Status::Delivered)]
        );
    }

    #[test]
    fn a_message_queued_past_its_validity_fails_with_30036_when_it_ends() {
        assert_eq!(
            timeline(plan(Final::Delivered, 2_001), ms(300), Some(ms(2_000))),
            [(ms(2_000), Status::Failed(30036))]
        );
    }

    #[test]
    fn a_silent_message_gets_nothing() {
        assert!(timeline(plan(Final::Silent, 0), ms(300), None).is_empty());
    }

    #[test]
    fn only_a_callback_nobody_answered_is_retried_and_only_once() {
        assert!(retry(None, 1));
        assert!(!retry(None, 2));
        assert!(!retry(Some(500), 1));
        assert!(!retry(Some(200), 1));
    }

    #[test]
    fn each_status_carries_its_own_parameters() {
        let message = Accepted {
            sid: "SM1".into(),
            account_sid: "AC1".into(),
            from: "+15005550006".into(),
            to: "+447700900123".into(),
            phone: "447700900123".into(),
            messaging_service_sid: None,
            url: "http://127.0.0.1:1/cb".into(),
            plan: plan(Final::Delivered, 0),
            validity: None,
            generation: 0,
        };
        let names = |status| -> Vec<&str> {
            message
                .params(status, 1_795_580_000_123)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        let core = [
            "MessageSid",
            "MessageStatus",
            "SmsSid",
            "SmsStatus",
            "AccountSid",
            "From",
            "To",
            "ApiVersion",
        ];
        assert_eq!(names(Status::Sent), core);
        assert_eq!(
            names(Status::Delivered),
            [&core[..], &["RawDlrDoneDate"]].concat()
        );
        assert_eq!(
            names(Status::Undelivered(30003)),
            [&core[..], &["ErrorCode", "RawDlrDoneDate"]].concat()
        );
        assert_eq!(
            names(Status::Failed(30001)),
            [&core[..], &["ErrorCode"]].concat()
        );
        let delivered = message.params(Status::Delivered, 1_795_580_000_123);
        assert!(delivered.contains(&("RawDlrDoneDate", "2611250413".to_owned())));
    }
}
