//! `SENDS_PER_MINUTE`, `COUNTRY_SENDS_PER_MINUTE` and `SMS_SENDS_PER_MINUTE`: budgets of
//! sends over all phones and processes, against toll fraud (and the same sliding minute
//! for a refresh session's refreshes) (pumping sends to many numbers someone is paid for).
//! One Redis key each, counted atomically; new codes leave a tenth of a budget to
//! re-sends of codes already pending, and to SMS fallbacks.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::codes::SendKind;
use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, Lua, SENDS_PER_MINUTE, ScriptArgs};

/// What counting a send got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Counted in `minute` (minutes since the Unix epoch), where it is given back if the
    /// send is not queued after all.
    In { minute: u64 },
    /// The budget is off.
    Unlimited,
    /// Over the budget: try again after `retry_after`.
    Over { retry_after: Duration },
}

impl FromRedisValue for Counted {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (counted, amount): (i64, u64) = FromRedisValue::from_redis_value(v)?;
        match counted {
            1 => Ok(Counted::In { minute: amount }),
            0 => Ok(Counted::Over {
                retry_after: Duration::from_millis(amount).max(Duration::from_secs(1)),
            }),
            other => Err(format!("sends_per_minute.lua answered {other}").into()),
        }
    }
}

/// sends_per_minute.lua's argument.
pub(crate) struct SendsPerMinuteArgs {
    /// The budget for this kind of send (new codes leave a tenth to re-sends).
    pub limit: u64,
}

impl ScriptArgs for SendsPerMinuteArgs {
    fn script() -> &'static Lua {
        &SENDS_PER_MINUTE
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self { limit } = self;
        argv.push(*limit);
    }
}

#[derive(Clone)]
pub struct SendBudget {
    redis: RedisConn,
    key: String,
    /// 0 is off.
    per_minute: u32,
}

impl SendBudget {
    /// `SENDS_PER_MINUTE`: every send, on any channel.
    pub fn new(redis: RedisConn, keys: &Keys, per_minute: u32) -> Self {
        Self {
            redis,
            key: keys.sends_per_minute(),
            per_minute,
        }
    }

    /// `COUNTRY_SENDS_PER_MINUTE`: every send to the country with `calling_code`.
    pub fn country(redis: RedisConn, keys: &Keys, calling_code: u16, per_minute: u32) -> Self {
        Self {
            redis,
            key: keys.country_sends_per_minute(calling_code),
            per_minute,
        }
    }

    /// Refreshes of one refresh session per minute (counted as [`SendKind::Resend`]:
    /// the whole budget).
    pub fn refreshes(
        redis: RedisConn,
        keys: &Keys,
        session_id: uuid::Uuid,
        per_minute: u32,
    ) -> Self {
        Self {
            redis,
            key: keys.session_refreshes(session_id),
            per_minute,
        }
    }

    /// `SMS_SENDS_PER_MINUTE`: every SMS, asked for or fallen back to. A fallback
    /// counts as a [`SendKind::Resend`]: the code is pending already.
    pub fn sms(redis: RedisConn, keys: &Keys, per_minute: u32) -> Self {
        Self {
            redis,
            key: keys.sms_per_minute(),
            per_minute,
        }
    }

    /// Counts one send of `kind`, if the budget has room for it.
    pub async fn count(&self, kind: SendKind) -> redis::RedisResult<Counted> {
        self.count_within(kind, 100).await
    }

    /// Counts one send of `kind`, if the budget is less than `percent` full (of what
    /// sends of its kind may fill): a send without a human check while the check is on
    /// leaves the rest to people who passed one.
    pub async fn count_within(&self, kind: SendKind, percent: u8) -> redis::RedisResult<Counted> {
        if self.per_minute == 0 {
            return Ok(Counted::Unlimited);
        }
        let share = kind.share_of(u64::from(self.per_minute));
        SendsPerMinuteArgs {
            limit: (share * u64::from(percent.min(100)) / 100).max(1),
        }
        .invocation()
        .key(&self.key)
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Takes back a send counted in `minute` that was not queued after all.
    pub async fn give_back(&self, minute: u64) -> redis::RedisResult<()> {
        redis::cmd("HINCRBY")
            .arg(&self.key)
            .arg(minute)
            .arg(-1)
            .exec_async(&mut self.redis.clone())
            .await
    }
}
