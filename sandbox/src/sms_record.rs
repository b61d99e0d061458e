//! What the sandbox remembers of the SMS side: each request to the Messages endpoint,
//! the scripts queued per number, and each status callback posted. The messages
//! themselves are filed with WhatsApp's, per phone (`record.rs`), for the inbox.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ScriptedSms;

/// One request to the Messages endpoint that passed the credentials check, whatever was
/// answered.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsCall {
    /// 1 for the first after start or reset, then one more per request.
    pub call_id: u64,
    /// `To`'s digits: the phone the sandbox files the message under.
    pub phone: String,
    /// `To` as given.
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// `Body` as given (it holds the code).
    pub body: String,
    pub status_callback: Option<String>,
    /// `ValidityPeriod` as given.
    pub validity_period: Option<String>,
    pub received_at_ms: u64,
    /// The HTTP status answered.
    pub status: u16,
    /// Twilio's error code, when refused.
    pub error_code: Option<u32>,
    /// The message's SID, when accepted.
    pub sid: Option<String>,
    /// The path before `/2010-04-01/…`.
    pub path_prefix: String,
}

/// One status callback, recorded once its posting is over (answered, or given up).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsCallbackRecord {
    pub message_sid: String,
    /// `sent`, `delivered`, `undelivered` or `failed`.
    pub message_status: String,
    /// The `ErrorCode` posted, on `undelivered` and `failed`.
    pub error_code: Option<u32>,
    /// `To`'s digits.
    pub phone: String,
    /// The `StatusCallback` URL, as given and signed.
    pub url: String,
    /// Every parameter posted, by name.
    pub params: BTreeMap<String, String>,
    /// The `X-Twilio-Signature` sent.
    pub signature: String,
    /// When the last attempt started.
    pub posted_at_ms: u64,
    /// The receiver's last answer; `None` if it never answered (refused, timed out).
    pub status: Option<u16>,
    /// Posts made, the retry included.
    pub attempts: u32,
}

/// The SMS side's log; part of `Recorded`, under its lock.
#[derive(Default)]
pub(crate) struct SmsLog {
    scripts: HashMap<String, VecDeque<ScriptedSms>>,
    /// In arrival order.
    calls: Vec<SmsCall>,
    last_call_id: u64,
    accepted: u64,
    /// In the order their posting ended.
    callbacks: Vec<SmsCallbackRecord>,
    callbacks_posted: u64,
    callbacks_failed: u64,
}

impl SmsLog {
    pub fn script(&mut self, phone: &str, replies: Vec<ScriptedSms>) {
        self.scripts
            .entry(phone.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn pop_script(&mut self, phone: &str) -> Option<ScriptedSms> {
        self.scripts.get_mut(phone).and_then(VecDeque::pop_front)
    }

    /// Numbers a request that passed the credentials check.
    pub fn next_call_id(&mut self) -> u64 {
        self.last_call_id += 1;
        self.last_call_id
    }

    pub fn log_call(&mut self, call: SmsCall) {
        if call.sid.is_some() {
            self.accepted += 1;
        }
        self.calls.push(call);
    }

    pub fn calls(&self, phone: &str) -> Vec<SmsCall> {
        self.calls
            .iter()
            .filter(|c| c.phone == phone)
            .cloned()
            .collect()
    }

    pub fn calls_logged(&self) -> u64 {
        self.calls.len() as u64
    }

    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    pub fn record_callback(&mut self, callback: SmsCallbackRecord) {
        if callback.status.is_some_and(|s| (200..300).contains(&s)) {
            self.callbacks_posted += 1;
        } else {
            self.callbacks_failed += 1;
        }
        self.callbacks.push(callback);
    }

    pub fn callbacks(&self) -> Vec<SmsCallbackRecord> {
        self.callbacks.clone()
    }

    /// Callbacks the receiver answered with 2xx.
    pub fn callbacks_posted(&self) -> u64 {
        self.callbacks_posted
    }

    /// Callbacks answered otherwise, or never.
    pub fn callbacks_failed(&self) -> u64 {
        self.callbacks_failed
    }
}
