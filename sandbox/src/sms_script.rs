//! Answers a test can queue for a number on the SMS side; each send to it pops one.

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::sms_callback::{Final, Plan};
use crate::twilio::{self, TwilioError, code};

/// An answer scripted for the next send of an SMS to a number, used once, in order,
/// before normal service resumes. By default the message is accepted (201) and
/// delivered.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedSms {
    /// Refuse the send with Twilio's error `code`: 21211 (invalid `To`), 21408 (region
    /// not enabled), 21610 (unsubscribed), 21614 (not a mobile number), 20429 (too many
    /// requests), 20500, 20503, …; its HTTP status is Twilio's for the code unless
    /// `status` says otherwise.
    #[serde(default)]
    pub code: Option<u32>,
    /// Refuse the send with this HTTP status (e.g. 429, 500, 503); its code is Twilio's
    /// for the status (20429, 20500, 20503) unless `code` names one. A 2xx status with
    /// no `code` accepts the message.
    #[serde(default)]
    pub status: Option<u16>,
    /// The error's `message` (default: Twilio's words for the code).
    #[serde(default)]
    pub message: Option<String>,
    /// `Retry-After` on a refusal, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (default: the configured latency); longer than the
    /// caller's timeout is a hang, after which an accepted message still goes out.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// What the status callbacks of an accepted message say (default `delivered`).
    #[serde(default)]
    pub outcome: Option<SmsOutcome>,
    /// The `ErrorCode` of an `undelivered` (default 30003) or `failed` (default 30001)
    /// message: 30003, 30005, 30006, 30007, 30008, 30001, …
    #[serde(default)]
    pub error_code: Option<u32>,
    /// How long an accepted message waits in Twilio's queue before it is `sent` (default
    /// 0). Longer than its `ValidityPeriod`, it fails with 30036 instead.
    #[serde(default)]
    pub queued_ms: Option<u64>,
}

/// What becomes of an accepted message, as its status callbacks tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsOutcome {
    /// `sent`, then `delivered`.
    #[default]
    Delivered,
    /// `sent`, then `undelivered` with an `ErrorCode`: the carrier could not deliver it.
    Undelivered,
    /// `failed` with an `ErrorCode`, and no `sent`: Twilio could not send it.
    Failed,
    /// No callback at all.
    Silent,
}

impl ScriptedSms {
    /// The refusal this script asks for, if any, in Twilio's words; `to` as the request
    /// gave it, for the messages that name it.
    pub(crate) fn refusal(&self, to: &str) -> Option<TwilioError> {
        let status = self.status.and_then(|s| StatusCode::from_u16(s).ok());
        let refused_status = status.filter(|s| !s.is_success());
        let code = match (self.code, refused_status) {
            (Some(code), _) => code,
            (None, Some(status)) => twilio::code_of(status),
            (None, None) => return None,
        };
        let mut error = TwilioError::new(code, to);
        if let Some(status) = status {
            error.status = status;
        }
        if let Some(message) = &self.message {
            error.message = message.clone();
        }
        Some(error)
    }

    /// The callbacks an accepted message gets.
    pub(crate) fn plan(&self) -> Plan {
        let final_status = match self.outcome.unwrap_or_default() {
            SmsOutcome::Delivered => Final::Delivered,
            SmsOutcome::Undelivered => {
                Final::Undelivered(self.error_code.unwrap_or(code::UNREACHABLE_HANDSET))
            }
            SmsOutcome::Failed => Final::Failed(self.error_code.unwrap_or(code::QUEUE_OVERFLOW)),
            SmsOutcome::Silent => Final::Silent,
        };
        Plan {
            final_status,
            queued: Duration::from_millis(self.queued_ms.unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(json: serde_json::Value) -> ScriptedSms {
        serde_json::from_value(json).expect("a script")
    }

    #[test]
    fn a_code_refuses_with_its_own_status_and_words() {
        let refusal = script(serde_json::json!({"code": 21610}))
            .refusal("+447700900123")
            .expect("refused");
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal.code, 21610);
        assert_eq!(refusal.message, "Attempt to send to unsubscribed recipient");
        let limited = script(serde_json::json!({"code": 20429, "retryAfter": 2}));
        assert_eq!(
            limited.refusal("+1").map(|r| r.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
    }

    #[test]
    fn a_bare_status_refuses_with_twilios_code_for_it() {
        let refusal = script(serde_json::json!({"status": 503}))
            .refusal("+1")
            .expect("refused");
        assert_eq!((refusal.status.as_u16(), refusal.code), (503, 20503));
        assert_eq!(refusal.message, "Service unavailable");
        let worded = script(serde_json::json!({"status": 500, "code": 20500, "message": "x"}))
            .refusal("+1")
            .expect("refused");
        assert_eq!(
            (worded.status.as_u16(), worded.message.as_str()),
            (500, "x")
        );
    }

    #[test]
    fn no_code_and_a_success_status_accept() {
        assert_eq!(ScriptedSms::default().refusal("+1"), None);
        assert_eq!(
            script(serde_json::json!({"status": 201})).refusal("+1"),
            None
        );
    }

    #[test]
    fn outcomes_plan_their_callbacks_with_default_error_codes() {
        assert_eq!(ScriptedSms::default().plan().final_status, Final::Delivered);
        let undelivered = script(serde_json::json!({"outcome": "undelivered"}));
        assert_eq!(undelivered.plan().final_status, Final::Undelivered(30003));
        let filtered = script(serde_json::json!({"outcome": "undelivered", "errorCode": 30007}));
        assert_eq!(filtered.plan().final_status, Final::Undelivered(30007));
        let failed = script(serde_json::json!({"outcome": "failed"}));
        assert_eq!(failed.plan().final_status, Final::Failed(30001));
        let silent = script(serde_json::json!({"outcome": "silent", "queuedMs": 5}));
        assert_eq!(silent.plan().final_status, Final::Silent);
        assert_eq!(silent.plan().queued, Duration::from_millis(5));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(
            serde_json::from_value::<ScriptedSms>(serde_json::json!({"failedCode": "1"})).is_err()
        );
    }
}
