//! A phone's code record: accepting a send (a new code, or the pending one again),
//! taking a send back, checking a guess, and spending or releasing a right one. Each is
//! one atomic script over the phone's keys, so the rules hold across api replicas.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::Keys;
use super::records;
use super::scripts::{Argv, FINISH_VERIFY, Lua, SEND, ScriptArgs, UNDO_SEND, VERIFY};
use super::status::STATUS_TTL_SECONDS;
use super::words::codes as word;
use crate::phone::PhoneNumber;

/// Whether a send stored a new code or re-sends the pending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    New,
    Resend,
}

impl SendKind {
    /// How much of a shared budget of `total` sends this kind may take: new codes leave
    /// a tenth (rounded down) to re-sends of codes already pending, so that when a flood
    /// of new numbers drains a budget, a user whose code has not come can still ask again.
    pub fn share_of(self, total: u64) -> u64 {
        match self {
            SendKind::New => total - total / 10,
            SendKind::Resend => total,
        }
    }

    fn word(self) -> &'static str {
        match self {
            SendKind::New => word::NEW,
            SendKind::Resend => word::RESEND,
        }
    }
}

/// The code a send would store if no code is pending.
#[derive(Clone, Copy, Debug)]
pub struct NewCode<'a> {
    pub code_id: Uuid,
    /// Keyed hash of phone and code: what guesses are compared with.
    pub mac: &'a [u8],
    /// The code encrypted for the worker.
    pub sealed: &'a [u8],
    /// How many digits it has.
    pub digits: u32,
}

/// The per-phone rules a send is held to.
#[derive(Clone, Copy, Debug)]
pub struct SendRules {
    /// A new code's life.
    pub ttl: Duration,
    /// The gap between two sends to a phone (zero: none).
    pub resend_cooldown: Duration,
    pub max_sends_per_code: u32,
    /// The cap on a phone's sends in any hour, without a human check.
    pub phone_sends_per_hour: u32,
    /// With a human check on: the sends a phone gets in an hour without one (the rest
    /// need one, and the hour's cap no longer applies); 0 is no human check.
    pub unchecked_sends_per_hour: u32,
    /// Wrong guesses for one phone across its codes before its new codes must have
    /// `long_code_digits` digits; 0 is no cap.
    pub wrong_guesses_per_phone: u32,
    pub long_code_digits: u32,
}

/// How a send was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HowSent {
    /// The user asked for the code by SMS.
    pub by_sms: bool,
    /// The request passed a human check.
    pub checked: bool,
}

/// What a send got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendReply {
    /// Stored (`New`) or the pending code re-sent (`Resend`); the request is `queued`.
    Accepted {
        kind: SendKind,
        code_id: Uuid,
        /// What is left of the code's life.
        expires_in: Duration,
        /// A re-send of a code the phone already received (its delivered receipt came).
        received: bool,
        /// The wait before the phone's next send.
        cooldown: Duration,
    },
    Limited {
        retry_after: Duration,
        /// A code is pending for the phone (its user may have it).
        code_pending: bool,
    },
    /// Nothing was stored: the phone's sends this hour need a human check, which the
    /// request has not passed.
    CheckRequired {
        /// A code is pending for the phone (its user may have it).
        code_pending: bool,
    },
    /// Nothing was stored: the phone has had too many wrong guesses, and a new code
    /// for it must have `long_code_digits` digits.
    NeedsLongerCode,
}

impl FromRedisValue for SendReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (kind, code_id, ms, received, cooldown): (String, String, u64, u8, u64) =
            FromRedisValue::from_redis_value(v)?;
        let accepted = |kind| -> Result<Self, ParsingError> {
            Ok(SendReply::Accepted {
                kind,
                code_id: Uuid::parse_str(&code_id)
                    .map_err(|e| format!("send.lua answered a code id that is not a UUID: {e}"))?,
                expires_in: Duration::from_millis(ms),
                received: received == 1,
                cooldown: Duration::from_millis(cooldown),
            })
        };
        match kind.as_str() {
            word::LIMITED => Ok(SendReply::Limited {
                retry_after: Duration::from_millis(ms),
                code_pending: received == 1,
            }),
            word::NEW => accepted(SendKind::New),
            word::RESEND => accepted(SendKind::Resend),
            word::CHECK => Ok(SendReply::CheckRequired {
                code_pending: received == 1,
            }),
            word::LONGER => Ok(SendReply::NeedsLongerCode),
            other => Err(format!("send.lua answered {other:?}").into()),
        }
    }
}

/// The rules a guess is held to.
#[derive(Clone, Copy, Debug)]
pub struct GuessRules {
    /// Wrong guesses a code (or one send of it) takes before it locks.
    pub max_attempts: u32,
    /// How long a right guess holds its code while its login is written.
    pub claim_for: Duration,
    /// How long a phone's count of wrong guesses lives after the last one.
    pub wrong_guesses_window: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Right: the code is claimed for this request until it spends or releases it.
    /// `by_sms`: an SMS carried the code (asked for, or fallen back to); `code_id`
    /// names the code.
    Verified {
        by_sms: bool,
        code_id: Uuid,
    },
    /// Right, but another request is logging in with this code right now.
    Claimed,
    NotFound,
    Expired,
    /// The attempt cap was reached earlier.
    Locked,
    Wrong {
        remaining: u32,
    },
}

impl FromRedisValue for VerifyOutcome {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut items = Vec::<Value>::from_redis_value(v)?.into_iter();
        let mut next = || items.next().ok_or("verify.lua answered too little");
        let outcome = String::from_redis_value(next()?)?;
        let remaining = u32::from_redis_value(next()?)?;
        Ok(match outcome.as_str() {
            word::OK => VerifyOutcome::Verified {
                by_sms: remaining == 1,
                code_id: Uuid::parse_str(&String::from_redis_value(next()?)?)
                    .map_err(|_| "verify.lua verified a code whose id is no UUID")?,
            },
            word::CLAIMED => VerifyOutcome::Claimed,
            word::NOT_FOUND => VerifyOutcome::NotFound,
            word::EXPIRED => VerifyOutcome::Expired,
            word::LOCKED => VerifyOutcome::Locked,
            word::WRONG => VerifyOutcome::Wrong { remaining },
            other => return Err(format!("verify.lua answered {other:?}").into()),
        })
    }
}

/// Clients' worth of unbound attempts one code allows in all (each client has
/// `OTP_MAX_ATTEMPTS` of its own): past it, unbound guessing of the code is locked for
/// everyone, which bounds a brute force from many addresses.
pub const CLIENTS_PER_CODE: u32 = 10;

/// What becomes of a claimed code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Its login is written: the code is used up.
    Spend,
    /// Its login could not be written: the code is given back for another try.
    Release,
}

/// Whether the claim was still the caller's when it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// The claim lapsed and another request took the code: nothing was done.
    Lapsed,
}

impl FromRedisValue for Finished {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match i64::from_redis_value(v)? {
            1 => Ok(Finished::Done),
            0 => Ok(Finished::Lapsed),
            other => Err(format!("finish_verify.lua answered {other}").into()),
        }
    }
}

/// send.lua's arguments.
pub(crate) struct SendArgs<'a> {
    /// The new code, stored if no code is pending.
    pub code_id: Uuid,
    pub mac: &'a [u8],
    pub sealed: &'a [u8],
    /// The new code's life.
    pub ttl: Duration,
    /// How much longer than its code a new record lives.
    pub record_grace: Duration,
    /// The gap before the phone's next send (zero: none).
    pub cooldown: Duration,
    pub max_sends_per_code: u32,
    pub phone_sends_per_hour: u32,
    /// Sends an hour without a human check (0: no human check).
    pub unchecked_sends_per_hour: u32,
    /// The request passed a human check.
    pub checked: bool,
    /// The send being accepted, and its phone (written into its status).
    pub request_id: Uuid,
    pub phone: &'a PhoneNumber,
    /// The new code's digits, and the digits a new code needs once the phone has had
    /// `wrong_guesses_per_phone` wrong guesses (0: never).
    pub digits: u32,
    pub long_code_digits: u32,
    pub wrong_guesses_per_phone: u32,
    /// The user asked for the code by SMS: the send's channel, and the SMS that carries
    /// the code (so WhatsApp's trouble sends it by SMS no second time).
    pub by_sms: bool,
}

impl ScriptArgs for SendArgs<'_> {
    fn script() -> &'static Lua {
        &SEND
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            code_id,
            mac,
            sealed,
            ttl,
            record_grace,
            cooldown,
            max_sends_per_code,
            phone_sends_per_hour,
            request_id,
            phone,
            digits,
            long_code_digits,
            wrong_guesses_per_phone,
            by_sms,
            unchecked_sends_per_hour,
            checked,
        } = self;
        argv.push(code_id.to_string())
            .push(*mac)
            .push(*sealed)
            .push_ms(*ttl)
            .push_ms(*record_grace)
            .push_ms(*cooldown)
            .push(*max_sends_per_code)
            .push(*phone_sends_per_hour)
            .push(request_id.to_string())
            .push(STATUS_TTL_SECONDS)
            .push(phone.as_str())
            .push(*digits)
            .push(*long_code_digits)
            .push(*wrong_guesses_per_phone)
            .push(if *by_sms {
                records::channel::SMS
            } else {
                records::channel::WHATSAPP
            })
            .push(*unchecked_sends_per_hour)
            .push(u8::from(*checked));
    }
}

/// undo_send.lua's arguments.
pub(crate) struct UndoSendArgs {
    /// What the send did: a new code is removed, a re-send only uncounted.
    pub kind: SendKind,
    pub code_id: Uuid,
    pub request_id: Uuid,
}

impl ScriptArgs for UndoSendArgs {
    fn script() -> &'static Lua {
        &UNDO_SEND
    }

    fn write(&self, argv: &mut Argv) {
        let Self {
            kind,
            code_id,
            request_id,
        } = self;
        argv.push(kind.word())
            .push(code_id.to_string())
            .push(request_id.to_string());
    }
}

/// verify.lua's arguments.
pub(crate) struct VerifyArgs<'a> {
    /// The guess's mac.
    pub mac: &'a [u8],
    pub max_attempts: u32,
    /// The request that claims the code if the guess is right, and for how long.
    pub claim: Uuid,
    pub claim_for: Duration,
    /// The send the guess is bound to, if any (written as `''` when none).
    pub bound_to: Option<Uuid>,
    pub wrong_guesses_window: Duration,
    /// The guessing client (`''` when unknown), and how many clients' worth of unbound
    /// attempts the code allows in all.
    pub client: &'a str,
    pub clients_per_code: u32,
}

impl ScriptArgs for VerifyArgs<'_> {
    fn script() -> &'static Lua {
        &VERIFY
    }

    fn write(&self, argv: &mut Argv) {
        let Self {
            mac,
            max_attempts,
            claim,
            claim_for,
            bound_to,
            wrong_guesses_window,
            client,
            clients_per_code,
        } = self;
        argv.push(*mac)
            .push(*max_attempts)
            .push(claim.to_string())
            .push_ms(*claim_for)
            .push(bound_to.map(|id| id.to_string()).unwrap_or_default())
            .push_ms(*wrong_guesses_window)
            .push(*client)
            .push(*clients_per_code);
    }
}

/// finish_verify.lua's arguments.
pub(crate) struct FinishVerifyArgs {
    pub claim: Uuid,
    pub how: Finish,
}

impl ScriptArgs for FinishVerifyArgs {
    fn script() -> &'static Lua {
        &FINISH_VERIFY
    }

    fn write(&self, argv: &mut Argv) {
        let Self { claim, how } = self;
        argv.push(claim.to_string()).push(match how {
            Finish::Spend => word::SPEND,
            Finish::Release => word::RELEASE,
        });
    }
}

/// The code records of one prefix.
#[derive(Clone)]
pub struct CodeRecords {
    redis: RedisConn,
    keys: Keys,
}

impl CodeRecords {
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Applies the per-phone limits and stores `code` for the send `request_id` unless
    /// a code is pending, in which case that one is re-sent; marks the request `queued`.
    pub async fn begin_send(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
        code: &NewCode<'_>,
        rules: &SendRules,
        how: HowSent,
    ) -> redis::RedisResult<SendReply> {
        SendArgs {
            code_id: code.code_id,
            mac: code.mac,
            sealed: code.sealed,
            ttl: rules.ttl,
            // The record outlives the code by one more life, so verify can say "expired".
            record_grace: rules.ttl,
            cooldown: rules.resend_cooldown,
            max_sends_per_code: rules.max_sends_per_code,
            phone_sends_per_hour: rules.phone_sends_per_hour,
            request_id,
            phone,
            digits: code.digits,
            long_code_digits: rules.long_code_digits,
            wrong_guesses_per_phone: rules.wrong_guesses_per_phone,
            by_sms: how.by_sms,
            unchecked_sends_per_hour: rules.unchecked_sends_per_hour,
            checked: how.checked,
        }
        .invocation()
        .key(self.keys.otp(phone))
        .key(self.keys.cooldown(phone))
        .key(self.keys.phone_sends(phone))
        .key(self.keys.status(phone, request_id))
        .key(self.keys.wrong_guesses(phone))
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Remembers which phone `request_id` is for, as long as its status lives, so its
    /// status (kept in the phone's hash slot) can be found from the id alone.
    pub async fn index_request(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
    ) -> redis::RedisResult<()> {
        // The worker renews the status's life as it goes, for up to a code's life and a
        // few retries: the index outlives it by a day rather than a minute.
        redis::cmd("SET")
            .arg(self.keys.request_phone(request_id))
            .arg(phone.as_str())
            .arg("EX")
            .arg(2 * STATUS_TTL_SECONDS)
            .exec_async(&mut self.redis.clone())
            .await
    }

    /// Forgets which phone `request_id` is for (a send taken back).
    pub async fn unindex_request(&self, request_id: Uuid) -> redis::RedisResult<()> {
        redis::cmd("DEL")
            .arg(self.keys.request_phone(request_id))
            .exec_async(&mut self.redis.clone())
            .await
    }

    /// Takes back an accepted send whose job could not be published: its code (if no
    /// re-send used it meanwhile), its place in the phone's limits and its status. Its
    /// index lives in another slot of a Redis Cluster: [`CodeRecords::unindex_request`].
    pub async fn undo_send(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
        kind: SendKind,
        code_id: Uuid,
    ) -> redis::RedisResult<()> {
        UndoSendArgs {
            kind,
            code_id,
            request_id,
        }
        .invocation()
        .key(self.keys.otp(phone))
        .key(self.keys.cooldown(phone))
        .key(self.keys.phone_sends(phone))
        .key(self.keys.status(phone, request_id))
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Checks a guess (its `mac`), bound to the send `bound_to` or to none; a right one
    /// claims the code for `claim`.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        mac: &[u8],
        bound_to: Option<Uuid>,
        client: Option<std::net::IpAddr>,
        claim: Uuid,
        rules: &GuessRules,
    ) -> redis::RedisResult<VerifyOutcome> {
        let client = client.map(super::keys::client_label).unwrap_or_default();
        VerifyArgs {
            mac,
            max_attempts: rules.max_attempts,
            claim,
            claim_for: rules.claim_for,
            bound_to,
            wrong_guesses_window: rules.wrong_guesses_window,
            client: &client,
            clients_per_code: CLIENTS_PER_CODE,
        }
        .invocation()
        .key(self.keys.otp(phone))
        .key(self.keys.wrong_guesses(phone))
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Spends or releases the code `claim` holds.
    pub async fn finish(
        &self,
        phone: &PhoneNumber,
        claim: Uuid,
        how: Finish,
    ) -> redis::RedisResult<Finished> {
        FinishVerifyArgs { claim, how }
            .invocation()
            .key(self.keys.otp(phone))
            .key(self.keys.phone_sends(phone))
            .invoke_async(&mut self.redis.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_codes_leave_a_tenth_of_a_budget_to_re_sends() {
        assert_eq!(SendKind::New.share_of(100), 90);
        assert_eq!(SendKind::New.share_of(28), 26);
        assert_eq!(SendKind::New.share_of(9), 9);
        assert_eq!(SendKind::New.share_of(0), 0);
        assert_eq!(SendKind::Resend.share_of(28), 28);
    }

    fn bulk(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|i| Value::BulkString(i.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn an_unknown_script_reply_is_an_error_not_a_guess() {
        assert_eq!(
            VerifyOutcome::from_redis_value(bulk(&["wrong", "2"])).ok(),
            Some(VerifyOutcome::Wrong { remaining: 2 })
        );
        assert!(VerifyOutcome::from_redis_value(bulk(&["maybe", "0"])).is_err());
        let id = Uuid::new_v4().to_string();
        assert!(SendReply::from_redis_value(bulk(&["resend", &id, "1000", "1", "30000"])).is_ok());
        assert_eq!(
            SendReply::from_redis_value(bulk(&["check", "", "0", "1", "0"])).ok(),
            Some(SendReply::CheckRequired { code_pending: true })
        );
        assert!(
            SendReply::from_redis_value(bulk(&["new", "not-a-uuid", "1000", "0", "0"])).is_err()
        );
        assert!(SendReply::from_redis_value(bulk(&["queued", &id, "1000", "0", "0"])).is_err());
        assert!(
            SendReply::from_redis_value(bulk(&["resend", &id, "1000", "1"])).is_err(),
            "send.lua always says the cooldown it set"
        );
        assert_eq!(
            Finished::from_redis_value(Value::Int(0)).ok(),
            Some(Finished::Lapsed)
        );
        assert!(Finished::from_redis_value(Value::Int(2)).is_err());
    }
}
