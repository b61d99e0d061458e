//! The JSON bodies of WATI's message status webhook events, one shape per event type.

use axum::body::Bytes;
use serde_json::{Value, json};

/// One status WATI reports for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Sent,
    Delivered,
    Read,
    Failed { code: String, detail: String },
}

impl EventKind {
    /// WATI's `eventType`.
    pub(crate) fn event_type(&self) -> &'static str {
        match self {
            Self::Sent => "templateMessageSent_v2",
            Self::Delivered => "sentMessageDELIVERED_v2",
            Self::Read => "sentMessageREAD_v2",
            Self::Failed { .. } => "templateMessageFailed",
        }
    }
}

/// What every event about one message repeats.
pub(crate) struct MessageFacts {
    /// The sender's `local_message_id` (v3), or one WATI made up.
    pub local_message_id: String,
    /// WATI's own id for the message.
    pub id: String,
    pub whatsapp_message_id: String,
    pub phone: String,
    pub template: String,
    /// The rendered message, code included.
    pub text: String,
    pub accepted_at_ms: u64,
}

impl MessageFacts {
    /// The event's body, stamped with `now_ms`; built once and posted as is, so repeats
    /// and retries of one event are byte for byte the same, as WATI's are.
    pub(crate) fn body(&self, kind: &EventKind, now_ms: u64) -> Bytes {
        let mut body = json!({
            "eventType": kind.event_type(),
            "localMessageId": self.local_message_id,
            "id": self.id,
            "whatsappMessageId": self.whatsapp_message_id,
            "timestamp": (now_ms / 1_000).to_string(),
            "waId": self.phone,
        });
        let extra = match kind {
            // The rendered template, code included, as WATI sends it: a receiver must
            // cope with a secret in its input and keep it out of its logs.
            EventKind::Sent => json!({
                "statusString": "SENT",
                "templateName": self.template,
                "created": iso8601_utc(self.accepted_at_ms),
                "text": self.text,
                "sourceType": "API",
            }),
            EventKind::Delivered => json!({
                "statusString": "Delivered",
                "type": "template",
                "text": null,
            }),
            EventKind::Read => json!({
                "statusString": "Read",
                "type": "template",
                "text": null,
            }),
            EventKind::Failed { code, detail } => json!({
                "statusString": "Failed",
                "templateName": self.template,
                "failedCode": code,
                "failedDetail": detail,
            }),
        };
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        // A `Value` always serializes; the empty fallback is never taken.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// `2026-11-25T10:00:00.000Z`, the form of WATI's `created`.
pub(crate) fn iso8601_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60,
        unix_ms % 1_000
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// dates on or after the epoch), so the crate needs no date library for one field.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so a leap day ends its year; eras are 400 years long.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> MessageFacts {
        MessageFacts {
            local_message_id: "local-1".into(),
            id: "6744a1b2c3d4e5f600000001".into(),
            whatsapp_message_id: "wamid.ABC".into(),
            phone: "919876543210".into(),
            template: "login_otp".into(),
            text: "123456 is your verification code.".into(),
            accepted_at_ms: 1_795_580_000_123,
        }
    }

    fn body(kind: &EventKind) -> Value {
        let bytes = facts().body(kind, 1_795_580_001_999);
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn dates_are_rendered_in_utc_with_milliseconds() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_utc(1_795_580_000_123), "2026-11-25T04:13:20.123Z");
        assert_eq!(iso8601_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn sent_carries_the_rendered_text_with_the_code() {
        assert_eq!(
            body(&EventKind::Sent),
            json!({
                "eventType": "templateMessageSent_v2",
                "statusString": "SENT",
                "localMessageId": "local-1",
                "id": "6744a1b2c3d4e5f600000001",
                "whatsappMessageId": "wamid.ABC",
                "templateName": "login_otp",
                "created": "2026-11-25T04:13:20.123Z",
                "timestamp": "1795580001",
                "waId": "919876543210",
                "text": "123456 is your verification code.",
                "sourceType": "API",
            })
        );
    }

    #[test]
    fn delivered_and_read_carry_the_same_ids_and_no_text() {
        for (kind, event_type, status) in [
            (EventKind::Delivered, "sentMessageDELIVERED_v2", "Delivered"),
            (EventKind::Read, "sentMessageREAD_v2", "Read"),
        ] {
            assert_eq!(
                body(&kind),
                json!({
                    "eventType": event_type,
                    "statusString": status,
                    "localMessageId": "local-1",
                    "id": "6744a1b2c3d4e5f600000001",
                    "whatsappMessageId": "wamid.ABC",
                    "timestamp": "1795580001",
                    "waId": "919876543210",
                    "type": "template",
                    "text": null,
                })
            );
        }
    }

    #[test]
    fn failed_carries_the_code_and_detail() {
        let failed = EventKind::Failed {
            code: "131026".into(),
            detail: "Message undeliverable".into(),
        };
        assert_eq!(
            body(&failed),
            json!({
                "eventType": "templateMessageFailed",
                "statusString": "Failed",
                "localMessageId": "local-1",
                "id": "6744a1b2c3d4e5f600000001",
                "whatsappMessageId": "wamid.ABC",
                "templateName": "login_otp",
                "timestamp": "1795580001",
                "waId": "919876543210",
                "failedCode": "131026",
                "failedDetail": "Message undeliverable",
            })
        );
    }
}
