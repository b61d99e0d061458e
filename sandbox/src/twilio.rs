//! Twilio's words and shapes for the Messages endpoint (`sms.rs`): its error body, the
//! Message resource it answers 201 with, its dates, SIDs and segment count.
//!
//! - Error body, 2010 API: `{"code", "message", "more_info", "status"}`
//!   (https://www.twilio.com/docs/api/2008-08-01/rest/response names the four fields;
//!   `more_info` is `https://www.twilio.com/docs/errors/<code>`). The codes and their
//!   words are from each code's page, `https://www.twilio.com/docs/api/errors/<code>`.
//! - The Message resource: https://www.twilio.com/docs/messaging/api/message-resource
//!   (fields, `num_segments` "0" through a Messaging Service, RFC 2822 dates in GMT,
//!   SIDs `SM` + 32 hex digits).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::event::civil_from_days;

/// The API version in every path, answer and callback.
pub(crate) const API_VERSION: &str = "2010-04-01";
/// A body longer than this (in characters) is refused with 21617.
pub(crate) const MAX_BODY_CHARS: usize = 1_600;

/// Twilio's codes the sandbox answers with.
pub(crate) mod code {
    pub const AUTHENTICATE: u32 = 20003;
    pub const NOT_FOUND: u32 = 20404;
    pub const INVALID_TO: u32 = 21211;
    pub const BODY_REQUIRED: u32 = 21602;
    pub const FROM_REQUIRED: u32 = 21603;
    pub const TO_REQUIRED: u32 = 21604;
    pub const BODY_TOO_LONG: u32 = 21617;
    pub const SERVICE_BODY_REQUIRED: u32 = 21619;
    pub const INVALID_VALIDITY_PERIOD: u32 = 21624;
    /// Queue overflow: the default ErrorCode of a `failed` message.
    pub const QUEUE_OVERFLOW: u32 = 30001;
    /// Unreachable destination handset: the default ErrorCode of an `undelivered` one.
    pub const UNREACHABLE_HANDSET: u32 = 30003;
    /// Validity Period Expired: queued longer than its `ValidityPeriod`.
    pub const VALIDITY_PERIOD_EXPIRED: u32 = 30036;
}

/// A refusal in Twilio's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TwilioError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl TwilioError {
    /// The error `code` with Twilio's status and words for it; `to` fills in the number
    /// where Twilio names it.
    pub(crate) fn new(code: u32, to: &str) -> Self {
        Self {
            status: status_of(code),
            code,
            message: message_of(code, to),
        }
    }

    pub(crate) fn response(&self) -> Response {
        (
            self.status,
            Json(json!({
                "code": self.code,
                "message": self.message,
                "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
                "status": self.status.as_u16(),
            })),
        )
            .into_response()
    }
}

/// The HTTP status Twilio answers a code with: 401 for 20003; 20404, 20429, 20500 and
/// 20503 carry theirs in their last three digits; the 21xxx request errors are 400.
pub(crate) fn status_of(code: u32) -> StatusCode {
    let carried = match code {
        code::AUTHENTICATE => 401,
        20_400..=20_599 => (code - 20_000) as u16,
        _ => 400,
    };
    StatusCode::from_u16(carried).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The code Twilio answers a bare status with (a script that names only a status):
/// 20003 for 401, else 20000 plus the status (20429, 20500, 20503, …).
pub(crate) fn code_of(status: StatusCode) -> u32 {
    match status.as_u16() {
        401 => code::AUTHENTICATE,
        other => 20_000 + u32::from(other),
    }
}

fn message_of(code: u32, to: &str) -> String {
    match code {
        code::AUTHENTICATE => "Authenticate".into(),
        code::NOT_FOUND => "The requested resource was not found".into(),
        20429 => "Too Many Requests".into(),
        20500 => "Internal Server Error".into(),
        20503 => "Service unavailable".into(),
        code::INVALID_TO => format!("The 'To' number {to} is not a valid phone number."),
        21408 => format!(
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
        ),
        code::BODY_REQUIRED => "Message body is required.".into(),
        code::FROM_REQUIRED => "A 'From' phone number is required.".into(),
        code::TO_REQUIRED => "A 'To' phone number is required.".into(),
        21610 => "Attempt to send to unsubscribed recipient".into(),
        21614 => format!("'To' number {to} is not a valid mobile number"),
        code::BODY_TOO_LONG => {
            "The concatenated message body exceeds the 1600 character limit.".into()
        }
        code::SERVICE_BODY_REQUIRED => {
            "A Message Body, Media URL or Content SID is required".into()
        }
        code::INVALID_VALIDITY_PERIOD => {
            "Validity period can only be set to integers between 1 and 36,000 seconds (10 hours max)."
                .into()
        }
        other => format!("Error {other}"),
    }
}

/// `+`, then 7 to 15 digits, the first not 0: a number in E.164, as `To` must be
/// (https://www.twilio.com/docs/api/errors/21211). The shortest length is an assumption:
/// Twilio does not publish its check.
pub(crate) fn is_e164(to: &str) -> bool {
    to.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// The fields of a Message resource just created.
pub(crate) struct Created<'a> {
    pub sid: &'a str,
    pub account_sid: &'a str,
    pub to: &'a str,
    /// `None` through a Messaging Service: Twilio picks the sender later.
    pub from: Option<&'a str>,
    pub messaging_service_sid: Option<&'a str>,
    pub body: &'a str,
    pub created_at_ms: u64,
}

impl Created<'_> {
    /// `queued`, or `accepted` through a Messaging Service.
    pub(crate) fn status(&self) -> &'static str {
        if self.messaging_service_sid.is_some() {
            "accepted"
        } else {
            "queued"
        }
    }

    /// The 201 body.
    pub(crate) fn resource(&self) -> Value {
        let uri = format!(
            "/{API_VERSION}/Accounts/{}/Messages/{}",
            self.account_sid, self.sid
        );
        let date = rfc2822(self.created_at_ms);
        // Through a Messaging Service no sender is assigned yet, so no segments either.
        let segments = match self.messaging_service_sid {
            Some(_) => 0,
            None => segments(self.body),
        };
        json!({
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": date,
            "date_sent": null,
            "date_updated": date,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": self.from,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": segments.to_string(),
            "price": null,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status(),
            "subresource_uris": {"media": format!("{uri}/Media.json")},
            "to": self.to,
            "uri": format!("{uri}.json"),
        })
    }
}

/// `Wed, 25 Nov 2026 04:13:20 +0000`: RFC 2822 in GMT, as Twilio's dates are.
pub(crate) fn rfc2822(unix_ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_ms / 1_000;
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let in_day = secs % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

/// `YYMMDDhhmm` in UTC, the form of a callback's `RawDlrDoneDate` (the carrier's own
/// time to the minute; Twilio gives it no zone, and UTC is the sandbox's choice).
pub(crate) fn raw_dlr_done_date(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    format!(
        "{:02}{month:02}{day:02}{:02}{:02}",
        year % 100,
        in_day / 3_600,
        in_day % 3_600 / 60
    )
}

/// GSM 03.38's basic characters (one septet each); the escape itself is left out.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
    ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension, two septets each.
const GSM_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// The SMS segments a body takes: GSM-7 if every character is in its alphabet (160
/// septets in one, 153 a part when split), else UCS-2 (70 UTF-16 units in one, 67 a
/// part). Twilio's Smart Encoding, which swaps look-alike characters, is not modelled.
pub(crate) fn segments(body: &str) -> usize {
    let septets: Option<usize> = body
        .chars()
        .map(|c| {
            if GSM_BASIC.contains(c) {
                Some(1)
            } else if GSM_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (units, single, part) = match septets {
        Some(septets) => (septets, 160, 153),
        None => (body.encode_utf16().count(), 70, 67),
    };
    if units <= single {
        1
    } else {
        units.div_ceil(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_twilios_statuses_and_words() {
        let invalid = TwilioError::new(21211, "+1555");
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            invalid.message,
            "The 'To' number +1555 is not a valid phone number."
        );
        assert_eq!(status_of(20003), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(20429), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(20500), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of(20503), StatusCode::SERVICE_UNAVAILABLE);
        for code in [21408, 21610, 21614, 21602, 21603, 21604] {
            assert_eq!(status_of(code), StatusCode::BAD_REQUEST, "{code}");
        }
        assert_eq!(code_of(StatusCode::TOO_MANY_REQUESTS), 20429);
        assert_eq!(code_of(StatusCode::SERVICE_UNAVAILABLE), 20503);
        assert_eq!(code_of(StatusCode::UNAUTHORIZED), 20003);
    }

    #[test]
    fn to_must_be_e164() {
        assert!(is_e164("+447700900123"));
        assert!(is_e164("+919876543210"));
        for bad in [
            "447700900123",
            "+44 7700 900123",
            "+0447700900",
            "+123",
            "+1234567890123456",
            "whatsapp:+447700900123",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn dates_are_twilios() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc2822(1_795_580_000_123),
            "Wed, 25 Nov 2026 04:13:20 +0000"
        );
        assert_eq!(raw_dlr_done_date(1_795_580_000_123), "2611250413");
        assert_eq!(raw_dlr_done_date(951_782_400_000), "0002290000");
    }

    #[test]
    fn segments_follow_the_encoding() {
        assert_eq!(segments("123456 is your verification code."), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        // An extension character takes two septets.
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        // One character outside GSM-7 makes it UCS-2.
        assert_eq!(segments(&format!("Код {}", "a".repeat(66))), 1);
        assert_eq!(segments(&format!("Код {}", "a".repeat(67))), 2);
        assert_eq!(segments(""), 1);
    }

    #[test]
    fn a_created_message_is_queued_or_accepted_through_a_service() {
        let mut created = Created {
            sid: "SM0123456789abcdef0123456789abcdef",
            account_sid: "AC0123456789abcdef0123456789abcdef",
            to: "+447700900123",
            from: Some("+15005550006"),
            messaging_service_sid: None,
            body: "123456 is your code",
            created_at_ms: 1_795_580_000_123,
        };
        let queued = created.resource();
        assert_eq!(queued["status"], "queued");
        assert_eq!(queued["num_segments"], "1");
        assert_eq!(queued["error_code"], Value::Null);
        assert_eq!(queued["date_created"], "Wed, 25 Nov 2026 04:13:20 +0000");
        assert_eq!(
            queued["uri"],
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SM0123456789abcdef0123456789abcdef.json"
        );
        created.from = None;
        created.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef");
        let accepted = created.resource();
        assert_eq!(accepted["status"], "accepted");
        assert_eq!(accepted["num_segments"], "0");
        assert_eq!(accepted["from"], Value::Null);
    }
}
