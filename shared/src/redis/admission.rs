//! Admission: a send is accepted only if the workers can hand it to WATI before its
//! code expires, at the configured budgets. Every api replica reserves in one Redis
//! sorted set of the sends admitted and not yet finished by a worker, atomically, so a
//! burst of any speed is admitted only as far as the budgets reach; the rest get 503
//! at once. How much fits in a code's remaining life is `Budgets::capacity` (in
//! `crate::budget`): a re-send of a code with little life left fits less.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::codes::SendKind;
use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{ADMIT, Argv, Lua, ScriptArgs};
use super::sender_health::{PoolView, Unhealthy};
use crate::senders::Sender;

/// What admission counts a number sending probes at (see [`Admission::room`]).
const PROBING_MESSAGES_PER_SECOND: u32 = 1;
use crate::budget::{Budgets, Capacity};

/// What a reservation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Admitted: the send counts until a worker finishes it.
    Admitted,
    /// No room; a client should try again after `retry_after`.
    Full { retry_after: Duration },
    /// No budget is set, so nothing is counted.
    Unlimited,
}

/// admit.lua's answer: admitted or not, and the sends waiting.
struct Admitted {
    admitted: bool,
    pending: u64,
}

impl FromRedisValue for Admitted {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (admitted, pending): (i64, u64) = FromRedisValue::from_redis_value(v)?;
        match admitted {
            0 | 1 => Ok(Admitted {
                admitted: admitted == 1,
                pending,
            }),
            other => Err(format!("admit.lua answered {other}").into()),
        }
    }
}

/// admit.lua's arguments.
pub(crate) struct AdmitArgs {
    /// The sends that may be waiting, this one included, for it to be admitted.
    pub capacity: u64,
    pub request_id: Uuid,
    /// What is left of the send's code's life: how long it counts.
    pub life: Duration,
}

impl ScriptArgs for AdmitArgs {
    fn script() -> &'static Lua {
        &ADMIT
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            capacity,
            request_id,
            life,
        } = self;
        argv.push(*capacity)
            .push(request_id.to_string())
            .push_ms(*life);
    }
}

pub struct Admission {
    redis: RedisConn,
    key: String,
    budgets: Budgets,
    /// A code's normal life, `OTP_TTL`.
    code_ttl: Duration,
    /// New codes are admitted as if they had this much less life (see [`reserve_for`]).
    reserve_for: Duration,
    /// Which sending numbers are paused: they count for nothing.
    pool: PoolView,
}

/// How much shorter a new code's life is taken to be, so that the room it leaves is
/// there for re-sends: a re-send whose code is at most this old always fits in it, its
/// code having at least the life new codes were counted with. Twice the resend cooldown
/// (the earliest a user can ask again, and once more), and at least a tenth of a code's
/// life, but never more than half of it, or a long cooldown would leave new codes no
/// room at all. (A share of the room was not enough: a re-send after the cooldown has
/// that much less life, and so that much less room, as new codes took, and got none.)
pub fn reserve_for(code_ttl: Duration, resend_cooldown: Duration) -> Duration {
    (resend_cooldown * 2).max(code_ttl / 10).min(code_ttl / 2)
}

impl Admission {
    pub fn new(
        redis: RedisConn,
        keys: &Keys,
        budgets: &Budgets,
        code_ttl: Duration,
        reserve_for: Duration,
        pool: PoolView,
    ) -> Self {
        if let Capacity::Sends { sends, .. } = budgets.capacity(code_ttl) {
            metrics::gauge!(crate::metrics::SEND_CAPACITY).set(sends as f64);
        }
        Self {
            redis,
            key: keys.pending_sends(),
            budgets: budgets.clone(),
            code_ttl,
            reserve_for,
            pool,
        }
    }

    /// The sends that may be waiting for a send of `kind` whose code has `life` left to
    /// be admitted, with the sending numbers that are not paused: a re-send's whole
    /// life's worth, a new code's as if its life were `reserve_for` shorter. `Err` with
    /// how long until a number may send again, when every number is paused.
    pub fn room(&self, life: Duration, kind: SendKind) -> Result<Capacity, Duration> {
        let unhealthy = self.pool.get();
        let budgets = if unhealthy.is_empty() {
            None
        } else {
            Some(
                self.budgets
                    .with_senders(|s| match unhealthy.get(s.name()) {
                        None => Some(s.clone()),
                        // Counted at a message a second: enough for sends to wait for
                        // its probes (without any, it would never show it is back), not
                        // for a promise its pause could break.
                        Some(Unhealthy::Probing) => Some(Sender {
                            messages_per_second: PROBING_MESSAGES_PER_SECOND,
                            ..s.clone()
                        }),
                        Some(Unhealthy::PausedUntil(_)) => None,
                    })
                    .ok_or_else(|| resume_in(unhealthy.values(), crate::now_ms()))?,
            )
        };
        let budgets = budgets.as_ref().unwrap_or(&self.budgets);
        Ok(match kind {
            SendKind::Resend => budgets.capacity(life),
            SendKind::New => budgets.capacity(life.saturating_sub(self.reserve_for)),
        })
    }

    /// Reserves room for the send `request_id`, whose code has `life` left, if the
    /// sends already waiting and this one can all be handed over within it. A new code
    /// leaves room to re-sends of pending codes (see [`Admission::room`]). A life past
    /// `OTP_TTL` (the hour's last send keeps its code longer) counts as `OTP_TTL`: such a
    /// send takes no more room, nor for longer, than any other.
    pub async fn reserve(
        &self,
        request_id: Uuid,
        life: Duration,
        kind: SendKind,
    ) -> redis::RedisResult<Reservation> {
        let life = life.min(self.code_ttl);
        let capacity = match self.room(life, kind) {
            Ok(capacity) => capacity,
            Err(resume_in) => {
                return Ok(Reservation::Full {
                    retry_after: resume_in,
                });
            }
        };
        let sends = match capacity {
            Capacity::Unlimited => return Ok(Reservation::Unlimited),
            // Too little life left for any budget: once this code expires, a new one
            // has a whole life.
            Capacity::Sends { sends: 0, .. } => {
                return Ok(Reservation::Full {
                    retry_after: life.max(Duration::from_secs(1)),
                });
            }
            Capacity::Sends { sends, .. } => sends,
        };
        let answer: Admitted = AdmitArgs {
            capacity: sends,
            request_id,
            life,
        }
        .invocation()
        .key(&self.key)
        .invoke_async(&mut self.redis.clone())
        .await?;
        metrics::gauge!(crate::metrics::SEND_BACKLOG).set(answer.pending as f64);
        Ok(if answer.admitted {
            Reservation::Admitted
        } else {
            Reservation::Full {
                retry_after: capacity.retry_after(answer.pending),
            }
        })
    }

    /// Counts again a send that goes out once more (Meta refused it for its number's
    /// trouble): it waits for WATI as any admitted send does, whatever the room (its 202
    /// was given), until a worker finishes it or a code's life has passed.
    pub async fn count_again(&self, request_id: Uuid) -> redis::RedisResult<()> {
        if matches!(self.budgets.capacity(self.code_ttl), Capacity::Unlimited) {
            return Ok(());
        }
        let _: Admitted = AdmitArgs {
            capacity: u64::MAX,
            request_id,
            life: self.code_ttl,
        }
        .invocation()
        .key(&self.key)
        .invoke_async(&mut self.redis.clone())
        .await?;
        Ok(())
    }

    /// Gives back the room of a send that was not queued after all.
    pub async fn release(&self, request_id: Uuid) -> redis::RedisResult<()> {
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(request_id.to_string())
            .exec_async(&mut self.redis.clone())
            .await
    }
}

/// How long until the first of these numbers sends again: the end of the earliest
/// pause, or a second for a number whose probe is out; at least a second.
fn resume_in<'a>(unhealthy: impl Iterator<Item = &'a Unhealthy>, now_ms: u64) -> Duration {
    unhealthy
        .map(|state| match state {
            Unhealthy::PausedUntil(until) => Duration::from_millis(until.saturating_sub(now_ms)),
            Unhealthy::Probing => Duration::ZERO,
        })
        .min()
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_twice_the_cooldown_at_least_a_tenth_and_at_most_half_the_life() {
        let secs = Duration::from_secs;
        assert_eq!(reserve_for(secs(300), secs(30)), secs(60));
        assert_eq!(reserve_for(secs(300), secs(5)), secs(30));
        // Before, 60 s codes with a 30 s cooldown were all reserve: no new code got in.
        assert_eq!(reserve_for(secs(60), secs(30)), secs(30));
        assert_eq!(reserve_for(secs(120), secs(60)), secs(60));
    }
}
