//! A request's SMS fallback: begun at most once per code, when WhatsApp could not
//! deliver the request's code (WATI refused it, WhatsApp failed it, or no delivery
//! receipt came in time). Its delivery is the request's second ([`Delivery::Fallback`]):
//! its own status record, delivered mark and lease, beside the first's. When none can
//! be begun, a code no send of which arrived is retired as a failure would retire it.

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::{Delivery, Keys};
use super::records;
use super::scripts::{ABANDON_FALLBACK, Argv, BEGIN_FALLBACK, Lua, RETIRE_CODE, ScriptArgs};
use super::status::STATUS_TTL_SECONDS;
use super::words::fallback as word;
use crate::phone::PhoneNumber;

/// What beginning a fallback found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begun {
    /// Begun now: publish its SMS job.
    New,
    /// This request's fallback was begun before (its job may not have been published):
    /// publish its SMS job again; its delivery sends it once.
    Again,
    /// Another request's SMS carries the code: nothing to send.
    Taken,
    /// WhatsApp delivered the request after all.
    Delivered,
    /// The code is no longer pending (verified, expired, replaced).
    Gone,
}

impl Begun {
    /// Whether the SMS job is to be published.
    pub fn sends(self) -> bool {
        matches!(self, Begun::New | Begun::Again)
    }
}

impl FromRedisValue for Begun {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match String::from_redis_value(v)?.as_str() {
            word::NEW => Ok(Begun::New),
            word::AGAIN => Ok(Begun::Again),
            word::TAKEN => Ok(Begun::Taken),
            word::DELIVERED => Ok(Begun::Delivered),
            word::GONE => Ok(Begun::Gone),
            other => Err(format!("begin_fallback.lua answered {other:?}").into()),
        }
    }
}

/// begin_fallback.lua's arguments (and the status's life, always [`STATUS_TTL_SECONDS`]).
pub(crate) struct BeginFallbackArgs {
    pub request_id: Uuid,
}

impl ScriptArgs for BeginFallbackArgs {
    fn script() -> &'static Lua {
        &BEGIN_FALLBACK
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self { request_id } = self;
        argv.push(request_id.to_string()).push(STATUS_TTL_SECONDS);
    }
}

/// The fallbacks of one prefix.
#[derive(Clone)]
pub struct Fallbacks {
    redis: RedisConn,
    keys: Keys,
}

impl Fallbacks {
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Begins the SMS fallback of request `request_id` to `phone`, if it may.
    pub async fn begin(&self, phone: &PhoneNumber, request_id: Uuid) -> redis::RedisResult<Begun> {
        BeginFallbackArgs { request_id }
            .invocation()
            .key(self.keys.otp(phone))
            .key(self.keys.status(phone, request_id))
            .key(self.keys.status_of(phone, request_id, Delivery::Fallback))
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Whether the first delivery of request `request_id` to `phone` was delivered (or
    /// read), as its receipts say: a timer that runs out then has nothing to do.
    pub async fn first_delivered(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
    ) -> redis::RedisResult<bool> {
        let state: Option<String> = redis::cmd("HGET")
            .arg(self.keys.status(phone, request_id))
            .arg(records::status::STATE)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(matches!(
            state.as_deref(),
            Some(records::state::DELIVERED | records::state::READ)
        ))
    }

    /// Deletes the code of request `request_id` to `phone`, if it is still that
    /// request's, no send of it arrived and no SMS carries it: WhatsApp failed it, and
    /// it goes by no SMS (verify then answers "not found").
    pub async fn retire_code(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
    ) -> redis::RedisResult<()> {
        RetireCodeArgs
            .invocation()
            .key(self.keys.otp(phone))
            .key(self.keys.status(phone, request_id))
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Undoes the fallback of request `request_id` to `phone`, begun but its SMS job
    /// not published, unless a worker is delivering it: the fallback's status fails
    /// with `reason`, and the code is carried by its SMS no more. Whether it was undone.
    pub async fn abandon(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
        reason: &str,
    ) -> redis::RedisResult<bool> {
        AbandonFallbackArgs { request_id, reason }
            .invocation()
            .key(self.keys.otp(phone))
            .key(self.keys.status_of(phone, request_id, Delivery::Fallback))
            .invoke_async(&mut self.redis.clone())
            .await
    }
}

/// abandon_fallback.lua's arguments.
pub(crate) struct AbandonFallbackArgs<'a> {
    pub request_id: Uuid,
    pub reason: &'a str,
}

impl ScriptArgs for AbandonFallbackArgs<'_> {
    fn script() -> &'static Lua {
        &ABANDON_FALLBACK
    }

    fn write(&self, argv: &mut Argv) {
        let Self { request_id, reason } = self;
        argv.push(request_id.to_string()).push(*reason);
    }
}

/// retire_code.lua takes no arguments.
pub(crate) struct RetireCodeArgs;

impl ScriptArgs for RetireCodeArgs {
    fn script() -> &'static Lua {
        &RETIRE_CODE
    }

    fn write(&self, _argv: &mut Argv) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_reply_is_an_error() {
        let reply = |s: &str| Begun::from_redis_value(Value::BulkString(s.as_bytes().to_vec()));
        assert_eq!(reply("new").ok(), Some(Begun::New));
        assert_eq!(reply("again").ok(), Some(Begun::Again));
        assert!(reply("taken").is_ok_and(|b| !b.sends()));
        assert!(reply("maybe").is_err());
    }
}
