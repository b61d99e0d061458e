//! The WATI budgets shared by all workers through Redis: at most `WATI_CALLS_PER_10S`
//! calls in any 10 s (calls evenly spaced) and at most `WHATSAPP_MESSAGES_PER_SECOND`
//! recipients in any second. A call claims both just before it leaves.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, CLAIM_BUDGET, HOLD_CALLS, Lua, ScriptArgs};
use super::words::wati_budget as word;
use crate::budget::{Budgets, MESSAGE_WINDOW};

/// How long every worker holds its calls after a 429 that named no `Retry-After`.
pub const HOLD_WITHOUT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The budget that holds a call back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Calls,
    Messages,
}

impl Limit {
    /// The `limit` label of the budget-wait counter.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Calls => word::CALLS,
            Limit::Messages => word::MESSAGES,
        }
    }
}

/// What a claim got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The call may leave now with this many recipients (at least one).
    Granted { recipients: u32 },
    /// Nothing yet: try again after `wait`.
    Wait { wait: Duration, limit: Limit },
}

impl FromRedisValue for Claim {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (kind, amount, limit): (String, u64, String) = FromRedisValue::from_redis_value(v)?;
        match (kind.as_str(), limit.as_str()) {
            (word::GRANTED, _) if amount > 0 => Ok(Claim::Granted {
                recipients: u32::try_from(amount).map_err(|_| "too many recipients")?,
            }),
            (word::WAIT, word::CALLS) => Ok(Claim::Wait {
                wait: Duration::from_micros(amount),
                limit: Limit::Calls,
            }),
            (word::WAIT, word::MESSAGES) => Ok(Claim::Wait {
                wait: Duration::from_micros(amount),
                limit: Limit::Messages,
            }),
            _ => Err(format!("claim_budget.lua answered {kind:?} {amount} {limit:?}").into()),
        }
    }
}

/// claim_budget.lua's arguments (and the message window, always [`MESSAGE_WINDOW`]).
pub(crate) struct ClaimBudgetArgs {
    /// The gap between two calls (`None`: no call limit, written as 0).
    pub call_interval: Option<Duration>,
    /// Recipients per message window (0: no limit).
    pub messages_per_second: u32,
    /// Recipients the call would carry.
    pub wanted: u32,
}

impl ScriptArgs for ClaimBudgetArgs {
    fn script() -> &'static Lua {
        &CLAIM_BUDGET
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            call_interval,
            messages_per_second,
            wanted,
        } = self;
        argv.push(call_interval.map_or(0, |i| i.as_micros() as u64))
            .push(*messages_per_second)
            .push(MESSAGE_WINDOW.as_micros() as u64)
            .push(*wanted);
    }
}

/// hold_calls.lua's argument.
pub(crate) struct HoldCallsArgs {
    /// How long from now no call leaves.
    pub hold: Duration,
}

impl ScriptArgs for HoldCallsArgs {
    fn script() -> &'static Lua {
        &HOLD_CALLS
    }

    fn write(&self, argv: &mut Argv) {
        let Self { hold } = self;
        argv.push(hold.as_micros() as u64);
    }
}

/// The shared budgets of one prefix.
#[derive(Clone)]
pub struct Budget {
    redis: RedisConn,
    keys: Keys,
    call_interval: Option<Duration>,
    messages_per_second: u32,
}

impl Budget {
    pub fn new(redis: RedisConn, keys: Keys, budgets: &Budgets) -> Self {
        Self {
            redis,
            keys,
            call_interval: budgets.call_interval(),
            messages_per_second: budgets.messages_per_second,
        }
    }

    /// Claims a call with up to `wanted` recipients (at least one) leaving now.
    pub async fn claim(&self, wanted: u32) -> redis::RedisResult<Claim> {
        let wanted = wanted.max(1);
        if self.call_interval.is_none() && self.messages_per_second == 0 {
            return Ok(Claim::Granted { recipients: wanted });
        }
        ClaimBudgetArgs {
            call_interval: self.call_interval,
            messages_per_second: self.messages_per_second,
            wanted,
        }
        .invocation()
        .key(self.keys.wati_calls())
        .key(self.keys.whatsapp_messages())
        .key(self.keys.whatsapp_messages_sum())
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// WATI answered 429: no worker makes a call for `hold` (WATI's `Retry-After`), so
    /// that a limit WATI counts differently from us, or a call budget shared with
    /// another integration, is not answered with more calls. Only with a call limit:
    /// without one there is no shared call budget to hold.
    pub async fn hold_calls(&self, hold: Duration) -> redis::RedisResult<()> {
        if self.call_interval.is_none() {
            return Ok(());
        }
        HoldCallsArgs { hold }
            .invocation()
            .key(self.keys.wati_calls())
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }
}
