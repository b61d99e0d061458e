//! Answers a test can queue for a number; each call pops one per recipient, in order.

use serde::{Deserialize, Serialize};

/// An answer scripted for a number, used once, in order, before normal service resumes.
///
/// A v1 call pops one and reads `status`, `result`, `info`, `retryAfter`, `delayMs` and
/// `validWhatsAppNumber`. A v3 call pops one per recipient and combines them (the rules
/// are on `resolve` in `v3.rs`); only v3 reads `errors`, `omit` and `shape`. Both read
/// `failedCode`, `failedDetail` and `noReceipts`, which shape the delivery receipts of a
/// message the call accepts. A script wins over the number's fate in the population.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedReply {
    /// HTTP status (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// `result` in the body (default: true for 2xx, false otherwise).
    #[serde(default)]
    pub result: Option<bool>,
    #[serde(default)]
    pub info: Option<String>,
    /// `Retry-After` header, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (longer than the caller's timeout = a hang).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// `false` marks this recipient as no WhatsApp number (v3: `isValidWhatsAppNumber:
    /// false` in the v2 shape, an error in the documented one; v1: `result: false`,
    /// `validWhatsAppNumber: false`); nothing is sent.
    #[serde(default, rename = "validWhatsAppNumber")]
    pub valid_whatsapp_number: Option<bool>,
    /// v3: errors WATI reports for this recipient; any error means nothing is sent.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
    /// v3: leave this recipient out of `receivers`; nothing is sent.
    #[serde(default)]
    pub omit: Option<bool>,
    /// v3: the shape of the whole call's 200 answer.
    #[serde(default)]
    pub shape: Option<AnswerShape>,
    /// Accepted, but the webhook hears `templateMessageFailed` with this `failedCode`
    /// instead of `delivered` and `read`, as when WhatsApp cannot deliver.
    #[serde(default)]
    pub failed_code: Option<String>,
    /// `failedDetail` with `failedCode` (default "Message undeliverable").
    #[serde(default)]
    pub failed_detail: Option<String>,
    /// `true`: accepted, but the webhook hears nothing about this message.
    #[serde(default)]
    pub no_receipts: Option<bool>,
}

/// The shapes WATI's v3 send answers 200 with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerShape {
    /// `{"success":true,"broadcast_id":…,"error":null,"recipients":[{local_message_id,
    /// phone_number, errors}]}`: the shape docs.wati.io documents for v3.
    #[default]
    Recipients,
    /// `{"result":true,"receivers":[{localMessageId, waId, isValidWhatsAppNumber,
    /// errors}]}`: the v2 shape WATI also answers with (docs.wati.io "track template
    /// messages using webhooks").
    Receivers,
    /// `{"success":true,"error":null}`: no per-recipient answer, every recipient sent.
    Success,
}
