//! The WATI budgets shared by all workers through Redis: at most `WATI_CALLS_PER_10S`
//! calls in any 10 s (calls evenly spaced) and at most `WHATSAPP_MESSAGES_PER_SECOND`
//! recipients in any second. A call claims both just before it leaves.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, CLAIM_BUDGET, HOLD_CALLS, Lua, ScriptArgs};
use super::words::wati_budget as word;
use crate::budget::{Budgets, counted_second};
use crate::senders::{Senders, SentFrom};

/// Most recipients of a call from a number coming back from a pause: a probe risks few
/// codes on a number that may still be in trouble.
pub const PROBE_RECIPIENTS: u32 = 1;
/// How long a probe's delivery receipt is waited for before another probe may leave.
pub const PROBE_WAIT: Duration = Duration::from_secs(10);

/// How long every worker holds its calls after a 429 that named no `Retry-After`.
pub const HOLD_WITHOUT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What holds a call back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Calls,
    Messages,
    /// Every sending number is paused (or waits for its probe's receipt).
    Paused,
}

impl Limit {
    /// The `limit` label of the budget-wait counter.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Calls => word::CALLS,
            Limit::Messages => word::MESSAGES,
            Limit::Paused => word::PAUSED,
        }
    }
}

/// What a claim got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The call may leave now from `from`, with this many recipients (at least one).
    Granted { recipients: u32, from: SentFrom },
    /// Nothing yet: try again after `wait`.
    Wait { wait: Duration, limit: Limit },
}

/// claim_budget.lua's reply, before the number's position is read as its name.
enum Reply {
    Granted {
        recipients: u32,
        /// The number's place in the pool, from 1.
        position: usize,
        probe: bool,
    },
    Wait(Claim),
}

impl FromRedisValue for Reply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (kind, amount, third, probe): (String, u64, String, u8) =
            FromRedisValue::from_redis_value(v)?;
        let wait = |limit| {
            Ok(Reply::Wait(Claim::Wait {
                wait: Duration::from_micros(amount),
                limit,
            }))
        };
        match (kind.as_str(), third.as_str()) {
            (word::GRANTED, position) if amount > 0 => Ok(Reply::Granted {
                recipients: u32::try_from(amount).map_err(|_| "too many recipients")?,
                position: position
                    .parse()
                    .map_err(|_| format!("claim_budget.lua named number {position:?}"))?,
                probe: probe == 1,
            }),
            (word::WAIT, word::CALLS) => wait(Limit::Calls),
            (word::WAIT, word::MESSAGES) => wait(Limit::Messages),
            (word::WAIT, word::PAUSED) => wait(Limit::Paused),
            _ => Err(format!("claim_budget.lua answered {kind:?} {amount} {third:?}").into()),
        }
    }
}

/// claim_budget.lua's arguments.
pub(crate) struct ClaimBudgetArgs<'a> {
    /// The gap between two calls (`None`: no call limit, written as 0).
    pub call_interval: Option<Duration>,
    /// Recipients the call would carry.
    pub wanted: u32,
    /// The sending numbers, each with its rate: `name=rate,…`.
    pub numbers: &'a str,
}

impl ScriptArgs for ClaimBudgetArgs<'_> {
    fn script() -> &'static Lua {
        &CLAIM_BUDGET
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            call_interval,
            wanted,
            numbers,
        } = self;
        argv.push(call_interval.map_or(0, |i| i.as_micros() as u64))
            .push(counted_second().as_micros() as u64)
            .push(*wanted)
            .push(PROBE_RECIPIENTS)
            .push(*numbers)
            .push_ms(PROBE_WAIT);
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
    senders: Senders,
    /// claim_budget.lua's numbers (`name=rate,…`) and keys, written once.
    numbers: String,
    claim_keys: Vec<String>,
}

impl Budget {
    pub fn new(redis: RedisConn, keys: Keys, budgets: &Budgets) -> Self {
        let senders = budgets.senders.clone();
        let numbers: Vec<String> = senders
            .iter()
            .map(|s| format!("{}={}", s.name(), s.messages_per_second))
            .collect();
        let mut claim_keys = vec![keys.wati_calls(), keys.senders()];
        for sender in senders.iter() {
            claim_keys.push(keys.whatsapp_messages(sender.name()));
            claim_keys.push(keys.whatsapp_messages_sum(sender.name()));
        }
        Self {
            redis,
            keys,
            call_interval: budgets.call_interval(),
            senders,
            numbers: numbers.join(","),
            claim_keys,
        }
    }

    /// Claims a call with up to `wanted` recipients (at least one) leaving now, from
    /// the sending number with the most room.
    pub async fn claim(&self, wanted: u32) -> redis::RedisResult<Claim> {
        let mut invocation = ClaimBudgetArgs {
            call_interval: self.call_interval,
            wanted: wanted.max(1),
            numbers: &self.numbers,
        }
        .invocation();
        for key in &self.claim_keys {
            invocation.key(key);
        }
        match invocation.invoke_async(&mut self.redis.clone()).await? {
            Reply::Granted {
                recipients,
                position,
                probe,
            } => {
                let sender = position
                    .checked_sub(1)
                    .and_then(|i| self.senders.get(i))
                    .ok_or_else(|| {
                        redis::RedisError::from((
                            redis::ErrorKind::Parse,
                            "claim_budget.lua named a number out of the pool",
                        ))
                    })?;
                Ok(Claim::Granted {
                    recipients,
                    from: SentFrom {
                        sender: sender.clone(),
                        probe,
                    },
                })
            }
            Reply::Wait(claim) => Ok(claim),
        }
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
