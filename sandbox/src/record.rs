//! What the sandbox remembers: messages sent (WhatsApp and SMS, filed together per
//! phone), calls answered, scripts queued, the plan window, a log of calls in arrival
//! order, and the receipts posted to the webhook; the SMS side's own log (`sms_record`);
//! the events posted to the app's webhook (`app_record`); the human check's tokens and
//! siteverify calls (`captcha_record`); and which phones got a message last, for the
//! inbox page.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::app_record::AppLog;
use crate::captcha_record::CaptchaLog;
use crate::limit::Window;
use crate::receipt::{AcceptedMessage, ReceiptPlan};
use crate::script::ScriptedReply;
use crate::sms_record::{SmsCall, SmsCallbackRecord, SmsLog};
use crate::templates::Rendered;

/// Which WATI endpoint a call came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST …/api/v1/sendTemplateMessage?whatsappNumber=…`: one recipient a call.
    #[default]
    V1,
    /// `POST …/api/ext/v3/messageTemplates/send`: a batch of recipients a call.
    V3,
}

/// How a message reached the phone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A WhatsApp template, through WATI.
    #[default]
    WhatsApp,
    /// An SMS, through Twilio's Messages endpoint.
    Sms,
}

/// One message the sandbox accepted, as the phone shows it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Digits only (an SMS's `To` without its `+`).
    pub phone: String,
    /// The code the template carried (WhatsApp); empty for an SMS, whose `text` is its
    /// `Body` as sent.
    pub code: String,
    #[serde(default)]
    pub channel: Channel,
    /// The template it went out in.
    #[serde(default)]
    pub template: String,
    /// What the phone shows: the body, its footer and its button.
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub footer: Option<String>,
    #[serde(default)]
    pub button: Option<String>,
    pub broadcast_name: String,
    pub received_at_ms: u64,
    /// The recipient's `local_message_id` (v3 only).
    #[serde(default)]
    pub local_message_id: Option<String>,
    /// The HTTP call that carried it (see [`CallRecord::call_id`]; for an SMS,
    /// [`SmsCall::call_id`]).
    #[serde(default)]
    pub call_id: u64,
    /// An SMS's `MessageSid`.
    #[serde(default)]
    pub sid: Option<String>,
    /// An SMS's sender: `From`, or the `MessagingServiceSid` it went through.
    #[serde(default)]
    pub from: Option<String>,
}

/// The phones that got a message most recently, each with its latest messages: what the
/// inbox page shows.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbox {
    /// Most recently messaged phone first.
    pub phones: Vec<Conversation>,
    /// Phones with at least one message, shown or not.
    pub total_phones: u64,
}

/// One phone's latest messages in the [`Inbox`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub phone: String,
    /// The latest ones, oldest first, as a chat reads.
    pub messages: Vec<Message>,
    /// Messages accepted for this phone, shown or not.
    pub total_messages: u64,
}

/// One recipient of one call, whatever was answered.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub phone: String,
    /// The code the caller sent, whatever was answered.
    pub code: String,
    /// The HTTP status of the whole call.
    pub status: u16,
    pub received_at_ms: u64,
    #[serde(default)]
    pub local_message_id: Option<String>,
    #[serde(default)]
    pub call_id: u64,
    #[serde(default)]
    pub api: Api,
}

/// One HTTP call that passed the key check and the plan limit, in arrival order.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// 1 for the first call after start or reset, then one more per call.
    pub call_id: u64,
    pub api: Api,
    pub received_at_ms: u64,
    pub status: u16,
    /// The phones the call named, in order (as far as a rejected body could be read).
    pub recipients: Vec<String>,
    pub broadcast_name: String,
    /// The template the call named (empty when its body could not be read that far).
    #[serde(default)]
    pub template_name: String,
    /// The path before the endpoint: a tenant id, or whatever the caller's base URL
    /// carries (tests give each worker its own, to tell their calls apart).
    pub path_prefix: String,
}

/// One receipt posted to the webhook (one copy, if events are repeated), recorded once
/// its posting is over.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRecord {
    /// WATI's `eventType`, e.g. `sentMessageDELIVERED_v2`.
    pub event: String,
    pub local_message_id: String,
    pub phone: String,
    /// When the last attempt started.
    pub posted_at_ms: u64,
    /// The receiver's last answer; `None` if it never answered (refused, timed out).
    pub status: Option<u16>,
    /// Posts made, retries included.
    pub attempts: u32,
}

/// A call let through the plan limit, carried from arrival to answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub call_id: u64,
    pub api: Api,
    pub received_at_ms: u64,
    /// Which life of the sandbox admitted it: answers to calls made before a reset are
    /// not recorded after it.
    generation: u64,
}

/// One recipient's outcome, to record once the call is answered.
pub(crate) struct Sent {
    pub phone: String,
    pub code: String,
    /// What its phone would show.
    pub rendered: Rendered,
    pub local_message_id: Option<String>,
    /// WATI took it (it counts, and gets receipts).
    pub accepted: bool,
    /// It reaches the phone's inbox (not one Meta fails at once, such as a message
    /// without its parameters).
    pub reaches_phone: bool,
    /// The receipts it gets if accepted.
    pub receipts: ReceiptPlan,
}

/// One phone's messages, both channels, with when it last got one.
#[derive(Default)]
struct Thread {
    /// The [`Recorded::filed`] count at its latest message: its key in
    /// [`Recorded::recent`].
    last: u64,
    messages: Vec<Message>,
}

#[derive(Default)]
pub(crate) struct Recorded {
    messages: HashMap<String, Thread>,
    /// Each phone once, under its thread's `last`: the inbox reads the latest phones
    /// from the end without scanning the benchmarks' tens of thousands under the lock.
    recent: BTreeMap<u64, String>,
    /// Messages filed so far, both channels: it orders the phones in [`Recorded::recent`].
    filed: u64,
    calls: HashMap<String, Vec<Call>>,
    scripts: HashMap<String, VecDeque<ScriptedReply>>,
    log: Vec<CallRecord>,
    window: Window,
    accepted: u64,
    rate_limited: u64,
    last_call_id: u64,
    generation: u64,
    /// Path prefix of each call between its arrival and its log entry.
    prefixes: HashMap<u64, String>,
    /// In the order their posting ended.
    receipts: Vec<ReceiptRecord>,
    receipts_posted: u64,
    receipts_failed: u64,
    pub sms: SmsLog,
    pub app: AppLog,
    pub captcha: CaptchaLog,
}

impl Recorded {
    /// The WhatsApp messages of `phone`, oldest first.
    pub fn messages(&self, phone: &str) -> Vec<Message> {
        self.messages_on(phone, Channel::WhatsApp)
    }

    /// The SMS of `phone`, oldest first.
    pub fn sms_messages(&self, phone: &str) -> Vec<Message> {
        self.messages_on(phone, Channel::Sms)
    }

    fn messages_on(&self, phone: &str, channel: Channel) -> Vec<Message> {
        self.messages
            .get(phone)
            .into_iter()
            .flat_map(|t| &t.messages)
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// Files a message the phone got, and makes its phone the one messaged last.
    fn file(&mut self, message: Message) {
        self.filed += 1;
        let thread = self.messages.entry(message.phone.clone()).or_default();
        if thread.last != 0 {
            self.recent.remove(&thread.last);
        }
        thread.last = self.filed;
        self.recent.insert(self.filed, message.phone.clone());
        thread.messages.push(message);
    }

    /// The sandbox's life now: what is admitted now is recorded only while it lasts.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Logs an SMS request answered, and files its message if it was accepted, unless
    /// the sandbox was reset since the request arrived. Answers whether it was recorded.
    pub fn record_sms(&mut self, generation: u64, call: SmsCall, message: Option<Message>) -> bool {
        if generation != self.generation {
            return false;
        }
        self.sms.log_call(call);
        if let Some(message) = message {
            self.file(message);
        }
        true
    }

    /// Notes when the answer to app webhook attempt `seq` went out (`None`: the sender
    /// left first), unless the sandbox was reset since it arrived.
    pub fn app_answered(&mut self, generation: u64, seq: u64, at_ms: Option<u64>) {
        if generation == self.generation {
            self.app.answered(seq, at_ms);
        }
    }

    /// Records a status callback's posting unless the sandbox was reset since its
    /// message was accepted.
    pub fn record_sms_callback(&mut self, generation: u64, callback: SmsCallbackRecord) {
        if generation == self.generation {
            self.sms.record_callback(callback);
        }
    }

    /// The `max_phones` phones messaged last, latest first, each with its last
    /// `max_messages` messages, oldest first. "Last" is the order messages were
    /// accepted in, which is the order a phone would get them (a slow call's messages
    /// come after a quicker later call's, though they carry the earlier arrival time).
    pub fn inbox(&self, max_phones: usize, max_messages: usize) -> Inbox {
        let phones = self
            .recent
            .values()
            .rev()
            .filter_map(|phone| self.messages.get(phone).map(|t| (phone, t)))
            .take(max_phones)
            .map(|(phone, thread)| {
                let shown = thread.messages.len().saturating_sub(max_messages);
                Conversation {
                    phone: phone.clone(),
                    messages: thread.messages[shown..].to_vec(),
                    total_messages: thread.messages.len() as u64,
                }
            })
            .collect();
        Inbox {
            phones,
            total_phones: self.messages.len() as u64,
        }
    }

    pub fn calls(&self, phone: &str) -> Vec<Call> {
        self.calls.get(phone).cloned().unwrap_or_default()
    }

    pub fn call_log(&self) -> Vec<CallRecord> {
        let mut log = self.log.clone();
        // Calls are logged when answered; a slow one is logged after faster later ones.
        // The log is nearly sorted, which a stable sort handles in about linear time.
        log.sort_by_key(|r| r.call_id);
        log
    }

    pub fn logged_calls(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Calls numbered so far: every one let through, answered or still in progress.
    pub fn arrived(&self) -> u64 {
        self.last_call_id
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    pub fn receipts(&self) -> Vec<ReceiptRecord> {
        self.receipts.clone()
    }

    /// Receipts the webhook answered with 2xx.
    pub fn receipts_posted(&self) -> u64 {
        self.receipts_posted
    }

    /// Receipts given up on after the last retry.
    pub fn receipts_failed(&self) -> u64 {
        self.receipts_failed
    }

    /// Records a receipt's posting unless the sandbox was reset since its message was
    /// accepted.
    pub fn record_receipt(&mut self, generation: u64, delivered: bool, receipt: ReceiptRecord) {
        if generation != self.generation {
            return;
        }
        if delivered {
            self.receipts_posted += 1;
        } else {
            self.receipts_failed += 1;
        }
        self.receipts.push(receipt);
    }

    pub fn script(&mut self, phone: &str, replies: Vec<ScriptedReply>) {
        self.scripts
            .entry(phone.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn pop_script(&mut self, phone: &str) -> Option<ScriptedReply> {
        self.scripts.get_mut(phone).and_then(VecDeque::pop_front)
    }

    /// Forgets everything, the plan window included.
    pub fn reset(&mut self) {
        *self = Self {
            generation: self.generation + 1,
            ..Self::default()
        };
    }

    /// Lets a call through the plan limit and numbers it, or counts it as refused and
    /// answers how long until the window has room.
    pub fn admit(
        &mut self,
        api: Api,
        path_prefix: &str,
        now: Instant,
        received_at_ms: u64,
        calls_per_10s: u32,
    ) -> Result<Ticket, Duration> {
        if let Err(wait) = self.window.admit(now, calls_per_10s) {
            self.rate_limited += 1;
            return Err(wait);
        }
        self.last_call_id += 1;
        self.prefixes
            .insert(self.last_call_id, path_prefix.to_owned());
        Ok(Ticket {
            call_id: self.last_call_id,
            api,
            received_at_ms,
            generation: self.generation,
        })
    }

    /// Logs a call in the call log: one WATI refused before looking at any recipient
    /// (bad body, template), or, through [`Recorded::record`], an answered one.
    pub fn log_call(
        &mut self,
        ticket: Ticket,
        status: u16,
        broadcast_name: String,
        template_name: String,
        recipients: Vec<String>,
    ) {
        if ticket.generation == self.generation {
            let path_prefix = self.prefixes.remove(&ticket.call_id).unwrap_or_default();
            self.log.push(CallRecord {
                call_id: ticket.call_id,
                api: ticket.api,
                received_at_ms: ticket.received_at_ms,
                status,
                recipients,
                broadcast_name,
                template_name,
                path_prefix,
            });
        }
    }

    /// Records an answered call: a [`Call`] per recipient, a [`Message`] per accepted one.
    /// Answers the accepted messages, to be given their receipts (none if the call was
    /// made before a reset).
    #[must_use = "accepted messages are owed receipts"]
    pub fn record(
        &mut self,
        ticket: Ticket,
        status: u16,
        broadcast_name: String,
        template_name: String,
        sent: Vec<Sent>,
    ) -> Vec<AcceptedMessage> {
        if ticket.generation != self.generation {
            return Vec::new();
        }
        let mut recipients = Vec::with_capacity(sent.len());
        let mut accepted = Vec::new();
        for one in sent {
            self.calls.entry(one.phone.clone()).or_default().push(Call {
                phone: one.phone.clone(),
                code: one.code.clone(),
                status,
                received_at_ms: ticket.received_at_ms,
                local_message_id: one.local_message_id.clone(),
                call_id: ticket.call_id,
                api: ticket.api,
            });
            if one.accepted {
                self.accepted += 1;
                if one.reaches_phone {
                    self.file(Message {
                        phone: one.phone.clone(),
                        code: one.code.clone(),
                        channel: Channel::WhatsApp,
                        template: template_name.clone(),
                        text: one.rendered.text.clone(),
                        footer: one.rendered.footer.clone(),
                        button: one.rendered.button.clone(),
                        broadcast_name: broadcast_name.clone(),
                        received_at_ms: ticket.received_at_ms,
                        local_message_id: one.local_message_id.clone(),
                        call_id: ticket.call_id,
                        sid: None,
                        from: None,
                    });
                }
                accepted.push(AcceptedMessage {
                    phone: one.phone.clone(),
                    template: template_name.clone(),
                    text: one.rendered.text,
                    local_message_id: one.local_message_id,
                    plan: one.receipts,
                    generation: self.generation,
                });
            }
            recipients.push(one.phone);
        }
        self.log_call(ticket, status, broadcast_name, template_name, recipients);
        accepted
    }
}
