//! The fallback timers: a WhatsApp send WATI accepted waits `FALLBACK_AFTER_SECONDS` for
//! its delivered receipt, then is checked (and goes by SMS if it may). The timers are
//! one sorted set of send jobs scored by when each runs out, in Redis's clock. Any
//! worker claims those that ran out, for a while: one it checks is removed, one whose
//! worker stopped or failed before checking it runs out again when its claim does, so a
//! timer survives any worker's restart.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, CLAIM_TIMERS, Lua, SET_TIMERS, ScriptArgs};
use crate::job::{JobError, SendJob};

/// A send whose timer ran out, claimed by this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOut {
    /// The send's job as it was set (the sorted set's member).
    member: Vec<u8>,
}

impl RunOut {
    /// The send's job (a timer set by a newer build may not read).
    pub fn job(&self) -> Result<SendJob, JobError> {
        SendJob::decode(&self.member)
    }

    /// When its send was accepted, also where [`Self::job`] cannot read it.
    pub fn accepted_at_ms(&self) -> Option<u64> {
        SendJob::accepted_at_ms_of(&self.member)
    }
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Timers that ran out, claimed (the oldest first).
    Due(Vec<RunOut>),
    /// None has run out; the next does after this.
    NextIn(Duration),
    /// No timer is set.
    Empty,
}

impl FromRedisValue for Claim {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut reply: Vec<Value> = FromRedisValue::from_redis_value(v)?;
        if reply.is_empty() {
            return Err("claim_timers.lua answered nothing".into());
        }
        let wait_ms: i64 = FromRedisValue::from_redis_value(reply.remove(0))?;
        if !reply.is_empty() {
            // As bytes: one member that is not UTF-8 must not fail the whole claim.
            let members: Vec<Vec<u8>> = FromRedisValue::from_redis_value(Value::Array(reply))?;
            return Ok(Claim::Due(
                members
                    .into_iter()
                    .map(|member| RunOut { member })
                    .collect(),
            ));
        }
        match u64::try_from(wait_ms) {
            Ok(ms) => Ok(Claim::NextIn(Duration::from_millis(ms))),
            Err(_) if wait_ms == -1 => Ok(Claim::Empty),
            Err(_) => Err(format!("claim_timers.lua answered a wait of {wait_ms} ms").into()),
        }
    }
}

/// set_timers.lua's arguments.
pub(crate) struct SetTimersArgs<'a> {
    pub after: Duration,
    pub sends: &'a [SendJob],
}

impl ScriptArgs for SetTimersArgs<'_> {
    fn script() -> &'static Lua {
        &SET_TIMERS
    }

    fn write(&self, argv: &mut Argv) {
        let Self { after, sends } = self;
        let mut lines = Vec::with_capacity(sends.len() * 200);
        for job in *sends {
            lines.extend(job.encode());
            lines.push(b'\n');
        }
        argv.push_ms(*after).push(lines);
    }
}

/// claim_timers.lua's arguments.
pub(crate) struct ClaimTimersArgs {
    pub most: usize,
    pub claim_for: Duration,
}

impl ScriptArgs for ClaimTimersArgs {
    fn script() -> &'static Lua {
        &CLAIM_TIMERS
    }

    fn write(&self, argv: &mut Argv) {
        let Self { most, claim_for } = self;
        argv.push(*most).push_ms(*claim_for);
    }
}

/// The fallback timers of one prefix.
#[derive(Clone)]
pub struct FallbackTimers {
    redis: RedisConn,
    key: String,
}

impl FallbackTimers {
    pub fn new(redis: RedisConn, keys: &Keys) -> Self {
        Self {
            redis,
            key: keys.fallback_timers(),
        }
    }

    /// Sets the timers of `sends`, each running out `after` from now, in one call.
    pub async fn set(&self, sends: &[SendJob], after: Duration) -> redis::RedisResult<()> {
        let _set: u64 = SetTimersArgs { after, sends }
            .invocation()
            .key(&self.key)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Claims up to `most` timers that ran out, each for `claim_for`: unless checked
    /// (and [`done`](Self::done)) by then, a timer runs out again for any worker.
    pub async fn claim(&self, most: usize, claim_for: Duration) -> redis::RedisResult<Claim> {
        ClaimTimersArgs { most, claim_for }
            .invocation()
            .key(&self.key)
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Removes timers that were checked, or are to be checked no more.
    pub async fn done(&self, timers: &[RunOut]) -> redis::RedisResult<()> {
        if timers.is_empty() {
            return Ok(());
        }
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(
                timers
                    .iter()
                    .map(|t| t.member.as_slice())
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut self.redis.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_claim_reads_as_its_three_answers_and_nothing_else() {
        let read = |v: Vec<Value>| Claim::from_redis_value(Value::Array(v));
        assert_eq!(read(vec![Value::Int(-1)]).ok(), Some(Claim::Empty));
        assert_eq!(
            read(vec![Value::Int(1500)]).ok(),
            Some(Claim::NextIn(Duration::from_millis(1500)))
        );
        let due = read(vec![Value::Int(0), bulk("a"), bulk("b")]).ok();
        let members = |c: Option<Claim>| match c {
            Some(Claim::Due(d)) => d.into_iter().map(|r| r.member).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(members(due), [b"a".to_vec(), b"b".to_vec()]);
        assert!(read(vec![Value::Int(-2)]).is_err());
        assert!(read(vec![]).is_err());
    }
}
