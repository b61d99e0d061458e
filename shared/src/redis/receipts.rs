//! Applying delivery receipts (WATI's, and Twilio's status callbacks) to one delivery of
//! a send (forward only; see `receipt.lua`), and to its code: a failure receipt retires
//! a code no send of which reached the user, unless the caller keeps it to send it by
//! SMS.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::{Delivery, Keys};
use super::scripts::{Argv, Lua, RECEIPT, ScriptArgs};
use super::status::StatusStore;
use super::words::receipts as word;
use crate::job::SendJob;
use crate::phone::PhoneNumber;

/// What WhatsApp did with a message, as far as a send's status follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Happened<'a> {
    Sent,
    Delivered,
    Read,
    /// WhatsApp's error code, and its explanation.
    Failed {
        code: &'a str,
        reason: &'a str,
    },
}

impl Happened<'_> {
    fn word(self) -> &'static str {
        match self {
            Happened::Sent => word::SENT,
            Happened::Delivered => word::DELIVERED,
            Happened::Read => word::READ,
            Happened::Failed { .. } => word::FAILED,
        }
    }
}

/// What a failure does with a code no send of which reached the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKept {
    /// Deletes it: verify answers "not found".
    Delete,
    /// Keeps it for the caller, which sends it by SMS, or retires it with
    /// [`super::fallback::Fallbacks::retire_code`].
    Keep,
    /// The number it went from was in trouble: the send goes back to `queued`, for its
    /// job to be published again and go from another number (at most
    /// [`MAX_REROUTES`] times); otherwise as [`CodeKept::Keep`].
    Reroute,
}

/// Most times one send goes out again from another number.
pub const MAX_REROUTES: u32 = 3;

/// One receipt about a send of ours.
#[derive(Clone, Copy, Debug)]
pub struct ReceiptUpdate<'a> {
    pub request_id: Uuid,
    /// Which delivery of the send it is about.
    pub delivery: Delivery,
    /// What a failure does with the code.
    pub code: CodeKept,
    /// The phone the receipt names (`waId`), where it named one that reads as a phone.
    pub phone: Option<&'a PhoneNumber>,
    pub happened: Happened<'a>,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// WhatsApp's id of the message (`whatsappMessageId`), where the receipt gave one:
    /// a repeat of the refusal a send was rerouted for is known by it.
    pub message_id: Option<&'a str>,
}

/// What applying a receipt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// No send of ours has that id (another system's message, or a status expired).
    UnknownSend,
    /// Nothing changed: a repeat, or an event its send has gone past (a `sent` receipt
    /// after the worker's own `sent`).
    Unchanged,
    Changed {
        /// From acceptance to delivery, when this receipt made the send delivered.
        first_delivery: Option<Duration>,
        /// From delivery to reading, when this receipt made the send read.
        first_read: Option<Duration>,
        /// The send whose code a failure kept (asked to) rather than retire it: the
        /// caller sends the code by SMS, or retires it.
        kept: Option<SendJob>,
        /// The phone the send is for.
        phone: PhoneNumber,
        /// The number the message went from, where known.
        sent_by: Option<SentBy>,
    },
    /// A failure for its number's trouble sent the send back to `queued`: the caller
    /// publishes this job again.
    Rerouted {
        job: SendJob,
        sent_by: Option<SentBy>,
    },
}

/// The number a WhatsApp message went from, as its status recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentBy {
    /// The number's name ([`crate::senders::Sender::name`]).
    pub sender: String,
    /// When the message left for WATI (Unix ms).
    pub sent_at_ms: u64,
    /// Whether it was a probe of a number back from a pause.
    pub probe: bool,
}

impl Applied {
    /// Every value of [`Applied::label`].
    pub const LABELS: [&'static str; 4] = ["unknown_send", "unchanged", "applied", "rerouted"];

    /// The `outcome` label of the receipt counter.
    pub fn label(&self) -> &'static str {
        match self {
            Applied::UnknownSend => "unknown_send",
            Applied::Unchanged => "unchanged",
            Applied::Changed { .. } => "applied",
            Applied::Rerouted { .. } => "rerouted",
        }
    }
}

/// receipt.lua's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ScriptReply {
    /// No status for that request.
    Unknown,
    /// The send is for another phone than the one asked with: nothing was done.
    OtherPhone,
    Unchanged,
    Applied {
        /// Unix ms, 0 when unknown.
        accepted_at: u64,
        delivered_at: u64,
        first_delivery: bool,
        first_read: bool,
        /// The code a failure kept.
        kept_code: Option<Uuid>,
        rerouted: bool,
        sent_by: Option<SentBy>,
        /// The send's languages, comma-separated.
        locales: String,
    },
}

impl FromRedisValue for ScriptReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (
            outcome,
            accepted_at,
            delivered_at,
            first_delivery,
            first_read,
            kept_code,
            sender,
            sent_at_ms,
            probe,
            locales,
        ): (String, u64, u64, u8, u8, String, String, u64, u8, String) =
            FromRedisValue::from_redis_value(v)?;
        let kept_code = match kept_code.as_str() {
            "" => None,
            id => Some(
                Uuid::parse_str(id)
                    .map_err(|_| ParsingError::from("receipt.lua kept a code with no id"))?,
            ),
        };
        let flag = |value: u8| match value {
            0 | 1 => Ok(value == 1),
            other => Err(ParsingError::from(format!(
                "receipt.lua answered a flag of {other}"
            ))),
        };
        let sent_by = (!sender.is_empty()).then_some(SentBy {
            sender,
            sent_at_ms,
            probe: probe == 1,
        });
        Ok(match outcome.as_str() {
            word::UNKNOWN => ScriptReply::Unknown,
            word::OTHER_PHONE => ScriptReply::OtherPhone,
            word::UNCHANGED => ScriptReply::Unchanged,
            word::APPLIED | word::REROUTED => ScriptReply::Applied {
                accepted_at,
                delivered_at,
                first_delivery: flag(first_delivery)?,
                first_read: flag(first_read)?,
                kept_code,
                rerouted: outcome == word::REROUTED,
                sent_by,
                locales,
            },
            other => return Err(format!("receipt.lua answered {other:?}").into()),
        })
    }
}

/// receipt.lua's arguments.
pub(crate) struct ReceiptArgs<'a> {
    /// The event, with WhatsApp's error code and reason for a failure (written as
    /// `''` for any other event).
    pub happened: Happened<'a>,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// The phone whose code record the call names: the send must be for it.
    pub phone: &'a PhoneNumber,
    /// What a failure does with the code.
    pub code_kept: CodeKept,
    /// WhatsApp's id of the message (`''` when unknown).
    pub message_id: &'a str,
}

impl ScriptArgs for ReceiptArgs<'_> {
    fn script() -> &'static Lua {
        &RECEIPT
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            happened,
            at_ms,
            phone,
            code_kept,
            message_id,
        } = self;
        let (code, reason) = match happened {
            Happened::Failed { code, reason } => (*code, *reason),
            _ => ("", ""),
        };
        argv.push(happened.word())
            .push(*at_ms)
            .push(code)
            .push(reason)
            .push(phone.as_str())
            .push(match code_kept {
                CodeKept::Delete => word::DELETE,
                CodeKept::Keep => word::KEEP,
                CodeKept::Reroute => word::REROUTE,
            })
            .push(MAX_REROUTES)
            .push(*message_id);
    }
}

/// The sends receipts are applied to.
#[derive(Clone)]
pub struct ReceiptRecords {
    redis: RedisConn,
    keys: Keys,
    statuses: StatusStore,
}

impl ReceiptRecords {
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self {
            statuses: StatusStore::new(redis.clone(), keys.clone()),
            redis,
            keys,
        }
    }

    /// Applies `update` to its send.
    pub async fn apply(&self, update: &ReceiptUpdate<'_>) -> redis::RedisResult<Applied> {
        // Most receipts name the phone (waId): one script call. Without it, or when it
        // names no send of this id, the phone is looked up by the request id.
        let by_wa_id = match update.phone {
            Some(phone) => self.run(update, phone).await?,
            None => ScriptReply::Unknown,
        };
        let (reply, phone) = match (by_wa_id, update.phone) {
            (ScriptReply::Unknown | ScriptReply::OtherPhone, _) | (_, None) => {
                let Some(phone) = self.statuses.phone_of(update.request_id).await? else {
                    return Ok(Applied::UnknownSend);
                };
                if update.phone == Some(&phone) {
                    // Already asked with this phone: the send is gone.
                    return Ok(Applied::UnknownSend);
                }
                match self.run(update, &phone).await? {
                    ScriptReply::OtherPhone => {
                        return Err(ParsingError::from(
                            "receipt.lua: the send's own phone is not its phone",
                        )
                        .into());
                    }
                    reply => (reply, phone),
                }
            }
            (reply, Some(phone)) => (reply, phone.clone()),
        };
        let since = |from: u64, to: u64| Duration::from_millis(to.saturating_sub(from));
        Ok(match reply {
            ScriptReply::Unknown | ScriptReply::OtherPhone => Applied::UnknownSend,
            ScriptReply::Unchanged => Applied::Unchanged,
            ScriptReply::Applied {
                accepted_at,
                kept_code: Some(code_id),
                rerouted: true,
                sent_by,
                locales,
                ..
            } => {
                let mut job = SendJob::new(update.request_id, code_id, phone, accepted_at);
                job.locales = locales
                    .split(',')
                    .filter_map(|l| crate::locale::Locale::parse(l).ok())
                    .collect();
                Applied::Rerouted { job, sent_by }
            }
            ScriptReply::Applied {
                accepted_at,
                delivered_at,
                first_delivery,
                first_read,
                kept_code,
                sent_by,
                ..
            } => Applied::Changed {
                first_delivery: (first_delivery && accepted_at > 0)
                    .then(|| since(accepted_at, delivered_at)),
                first_read: first_read.then(|| since(delivered_at, update.at_ms)),
                kept: kept_code.map(|code_id| {
                    SendJob::new(update.request_id, code_id, phone.clone(), accepted_at)
                }),
                phone,
                sent_by,
            },
        })
    }

    /// Runs receipt.lua on the send `update.request_id`, as a send to `phone`.
    async fn run(
        &self,
        update: &ReceiptUpdate<'_>,
        phone: &PhoneNumber,
    ) -> redis::RedisResult<ScriptReply> {
        ReceiptArgs {
            happened: update.happened,
            at_ms: update.at_ms,
            phone,
            code_kept: update.code,
            message_id: update.message_id.unwrap_or_default(),
        }
        .invocation()
        .key(
            self.keys
                .status_of(phone, update.request_id, update.delivery),
        )
        .key(self.keys.otp(phone))
        .key(
            self.keys
                .delivered_of(phone, update.request_id, update.delivery),
        )
        .invoke_async(&mut self.redis.clone())
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(outcome: &str, flags: (i64, i64, &str)) -> Result<ScriptReply, ParsingError> {
        ScriptReply::from_redis_value(Value::Array(vec![
            Value::BulkString(outcome.as_bytes().to_vec()),
            Value::Int(10),
            Value::Int(20),
            Value::Int(flags.0),
            Value::Int(flags.1),
            Value::BulkString(flags.2.as_bytes().to_vec()),
            Value::BulkString(b"15550001111".to_vec()),
            Value::Int(5),
            Value::Int(1),
            Value::BulkString(b"pt_BR".to_vec()),
        ]))
    }

    #[test]
    fn an_unknown_script_reply_is_an_error_not_a_guess() {
        let code_id = Uuid::new_v4();
        assert_eq!(
            reply("applied", (1, 0, &code_id.to_string())).ok(),
            Some(ScriptReply::Applied {
                accepted_at: 10,
                delivered_at: 20,
                first_delivery: true,
                first_read: false,
                kept_code: Some(code_id),
                rerouted: false,
                sent_by: Some(SentBy {
                    sender: "15550001111".into(),
                    sent_at_ms: 5,
                    probe: true
                }),
                locales: "pt_BR".into(),
            })
        );
        assert_eq!(
            reply("other_phone", (0, 0, "")).ok(),
            Some(ScriptReply::OtherPhone)
        );
        assert!(reply("applyed", (0, 0, "")).is_err());
        assert!(reply("applied", (2, 0, "")).is_err());
        assert!(reply("applied", (0, 0, "3")).is_err());
    }

    #[test]
    fn the_label_list_holds_every_variants_label() {
        let applied = [
            Applied::UnknownSend,
            Applied::Unchanged,
            Applied::Changed {
                first_delivery: None,
                first_read: None,
                kept: None,
                phone: PhoneNumber::from_e164_digits("919876543210").expect("phone"),
                sent_by: None,
            },
            Applied::Rerouted {
                job: SendJob::new(
                    Uuid::new_v4(),
                    Uuid::new_v4(),
                    PhoneNumber::from_e164_digits("919876543210").expect("phone"),
                    1,
                ),
                sent_by: None,
            },
        ];
        let labels: Vec<&str> = applied.iter().map(Applied::label).collect();
        assert_eq!(labels, Applied::LABELS);
    }
}
