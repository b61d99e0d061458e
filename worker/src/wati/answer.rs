//! What WATI answered, read defensively: at most a bounded number of bytes, both known
//! shapes of a v3 answer (`result` + `receivers[]`, or `success` alone), and texts cut
//! to a length that is safe to store and show.

use std::time::Duration;

use serde_json::Value;

/// A v3 answer's allowance: this much, plus [`BYTES_PER_RECIPIENT`] per recipient.
pub const BASE_ANSWER_BYTES: usize = 64 * 1024;
/// A receiver entry of a v3 answer is about 130 bytes.
pub const BYTES_PER_RECIPIENT: usize = 256;
/// WATI's texts are kept to this many characters.
pub const MAX_TEXT_CHARS: usize = 256;

/// What came back from one call to WATI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatiAnswer {
    /// An HTTP answer. `body` is `None` when it was not JSON, or longer than allowed.
    Http {
        status: u16,
        /// `Retry-After` in whole seconds, where given.
        retry_after: Option<Duration>,
        body: Option<AnswerBody>,
    },
    /// No answer within the timeout: the messages may or may not have gone out.
    Timeout,
    /// The connection failed.
    Connection,
}

/// The parts of a WATI answer body the worker reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerBody {
    /// `result` (v1, and v3's v2 shape) or `success` (v3's other shape).
    pub ok: Option<bool>,
    /// `info`, or `error` or `message` when it is a text.
    pub info: Option<String>,
    /// v3's per-recipient list, when the answer carries one: `recipients` in the shape
    /// WATI documents, `receivers` in the v2 shape it also answers with.
    pub receivers: Option<Vec<Receiver>>,
}

/// One entry of a v3 answer's `receivers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receiver {
    pub local_message_id: Option<String>,
    /// The phone, as WATI read it.
    pub wa_id: Option<String>,
    pub valid_number: Option<bool>,
    /// The entry's `errors`, as texts.
    pub errors: Vec<String>,
}

/// Cuts `text` to [`MAX_TEXT_CHARS`] characters.
pub fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// A text for one element of an `errors` list: a string as it is, an object by its
/// message, anything else as JSON.
fn error_text(value: &Value) -> String {
    match value {
        Value::String(s) => clip(s),
        Value::Object(map) => ["message", "error", "description", "detail", "title"]
            .iter()
            .find_map(|field| map.get(*field).and_then(Value::as_str))
            .map_or_else(|| clip(&value.to_string()), clip),
        other => clip(&other.to_string()),
    }
}

fn receiver(value: &Value) -> Receiver {
    let text = |field: &str| value.get(field).and_then(Value::as_str).map(clip);
    Receiver {
        local_message_id: text("localMessageId").or_else(|| text("local_message_id")),
        wa_id: text("waId").or_else(|| text("phone_number")),
        valid_number: value.get("isValidWhatsAppNumber").and_then(Value::as_bool),
        errors: value
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(error_text).collect())
            .unwrap_or_default(),
    }
}

impl AnswerBody {
    /// Reads an answer body; `None` when it is not a JSON object.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let object = value.as_object()?;
        let info = ["info", "error", "message"]
            .iter()
            .find_map(|field| object.get(*field).and_then(Value::as_str))
            .map(clip);
        Some(Self {
            ok: object
                .get("result")
                .and_then(Value::as_bool)
                .or_else(|| object.get("success").and_then(Value::as_bool)),
            info,
            receivers: ["recipients", "receivers"]
                .iter()
                .find_map(|field| object.get(*field).and_then(Value::as_array))
                .map(|list| list.iter().map(receiver).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_shape_gives_each_receiver() {
        let body = AnswerBody::parse(
            br#"{"result":true,"error":null,"templateName":"login_otp","receivers":[
                {"localMessageId":"a","waId":"919876543210","isValidWhatsAppNumber":true,"errors":[]},
                {"localMessageId":"b","waId":"14155552671","isValidWhatsAppNumber":false,"errors":[]},
                {"localMessageId":"c","waId":"447700900123","isValidWhatsAppNumber":true,
                 "errors":["Template param missing",{"message":"blocked"},{"code":7}]}
            ],"parameters":[]}"#,
        )
        .expect("parses");
        assert_eq!(body.ok, Some(true));
        let receivers = body.receivers.expect("a list");
        assert_eq!(receivers.len(), 3);
        assert_eq!(receivers[0].local_message_id.as_deref(), Some("a"));
        assert_eq!(receivers[1].valid_number, Some(false));
        assert_eq!(
            receivers[2].errors,
            ["Template param missing", "blocked", r#"{"code":7}"#]
        );
    }

    #[test]
    fn the_documented_v3_shape_gives_each_recipient() {
        let body = AnswerBody::parse(
            br#"{"success":true,"broadcast_id":"b-1","error":null,"recipients":[
                {"local_message_id":"a","phone_number":"919876543210","errors":[]},
                {"local_message_id":"b","phone_number":"14155552671","errors":["Invalid number"]}
            ]}"#,
        )
        .expect("parses");
        assert_eq!(body.ok, Some(true));
        let recipients = body.receivers.expect("a list");
        assert_eq!(recipients[1].local_message_id.as_deref(), Some("b"));
        assert_eq!(recipients[1].wa_id.as_deref(), Some("14155552671"));
        assert_eq!(recipients[1].valid_number, None);
        assert_eq!(recipients[1].errors, ["Invalid number"]);
    }

    #[test]
    fn the_success_shape_has_no_list() {
        let body =
            AnswerBody::parse(br#"{"success":false,"error":"Invalid template"}"#).expect("parses");
        assert_eq!(body.ok, Some(false));
        assert_eq!(body.info.as_deref(), Some("Invalid template"));
        assert_eq!(body.receivers, None);
    }

    #[test]
    fn texts_are_cut_and_non_objects_are_unreadable() {
        let long = format!(r#"{{"result":false,"info":"{}"}}"#, "x".repeat(10_000));
        let body = AnswerBody::parse(long.as_bytes()).expect("parses");
        assert_eq!(body.info.map(|i| i.chars().count()), Some(MAX_TEXT_CHARS));
        assert_eq!(AnswerBody::parse(b"[1,2]"), None);
        assert_eq!(AnswerBody::parse(b"<html>"), None);
    }
}
