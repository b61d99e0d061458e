//! The delivery lease, written once. A worker holds a per-request lease in Redis while
//! it delivers, so that a copy of the job (redelivered after a broken link, or
//! re-published) that reaches another worker goes back to the queue instead of calling
//! WATI too. The start script (`delivery`) takes it; [`Lease::keep_during`] keeps it
//! alive while the delivery waits (for budget, for its call, for a retry); the batcher
//! confirms every lease of a call at once right before it ([`confirm_all`]).

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::conn::RedisConn;
use super::scripts::{Argv, CONFIRM_LEASE, HOLD_LEASE, Lua, ScriptArgs};
use crate::senders::SentFrom;

/// Who holds a lease, as the hold script finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// The caller; it is extended (or released, when asked).
    Held,
    /// Another worker delivers a copy of the job and will finish it.
    TakenByAnother,
    /// Nobody: it lapsed, and a copy may have finished meanwhile.
    Lapsed,
}

impl FromRedisValue for Holding {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match i64::from_redis_value(v)? {
            1 => Ok(Holding::Held),
            0 => Ok(Holding::TakenByAnother),
            -1 => Ok(Holding::Lapsed),
            other => Err(format!("hold_lease.lua answered {other}").into()),
        }
    }
}

/// hold_lease.lua's arguments.
pub(crate) struct HoldLeaseArgs {
    /// Who must hold the lease for anything to change.
    pub owner: Uuid,
    /// How long from now it is held; zero releases it.
    pub ttl: Duration,
}

impl ScriptArgs for HoldLeaseArgs {
    fn script() -> &'static Lua {
        &HOLD_LEASE
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self { owner, ttl } = self;
        argv.push(owner.to_string()).push_ms(*ttl);
    }
}

/// confirm_lease.lua's arguments.
pub(crate) struct ConfirmLeaseArgs<'a> {
    pub owner: Uuid,
    pub ttl: Duration,
    /// The number the call goes from.
    pub from: &'a SentFrom,
}

impl ScriptArgs for ConfirmLeaseArgs<'_> {
    fn script() -> &'static Lua {
        &CONFIRM_LEASE
    }

    fn write(&self, argv: &mut Argv) {
        let Self { owner, ttl, from } = self;
        argv.push(owner.to_string())
            .push_ms(*ttl)
            .push(from.sender.name())
            .push(u8::from(from.probe));
    }
}

/// One delivery's lease on its request.
#[derive(Clone)]
pub struct Lease {
    redis: RedisConn,
    key: String,
    /// The delivery's status, where a call's number is recorded as it leaves.
    status_key: String,
    owner: Uuid,
    /// How long one hold lasts: longer than any one call to WATI.
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// A lease on `key` not yet taken, with an owner unique to this delivery whose
    /// status is `status_key`.
    pub(crate) fn new(redis: RedisConn, key: String, status_key: String, ttl: Duration) -> Self {
        Self {
            redis,
            key,
            status_key,
            owner: Uuid::new_v4(),
            ttl,
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn owner(&self) -> Uuid {
        self.owner
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Holds the lease for another `ttl` from now, if it is still this delivery's.
    pub async fn extend(&self) -> redis::RedisResult<Holding> {
        self.hold(self.ttl).await
    }

    /// Lets a copy go ahead at once. Best effort: a lease not released just lapses.
    pub async fn release(&self) {
        if let Err(e) = self.hold(Duration::ZERO).await {
            tracing::debug!(error = %e, "could not release a delivery lease; it will lapse");
        }
    }

    async fn hold(&self, ttl: Duration) -> redis::RedisResult<Holding> {
        HoldLeaseArgs {
            owner: self.owner,
            ttl,
        }
        .invocation()
        .key(&self.key)
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Runs `work`, extending the lease every third of its life meanwhile, so a long
    /// wait for budget or for a retry never lets it lapse. Losing it is noticed where it
    /// matters, by the check before each call; a failed extension is tried again at the
    /// next tick.
    pub async fn keep_during<T>(&self, work: impl Future<Output = T>) -> T {
        let period = self.ttl / 3;
        let keep = async {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                if let Err(e) = self.extend().await {
                    tracing::debug!(error = %e, "could not extend a delivery lease yet");
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = keep => never,
        }
    }
}

impl Lease {
    /// Extends the lease right before a call from `from`, if it is still this
    /// delivery's, and records the number in the delivery's status.
    pub async fn confirm(&self, from: &SentFrom) -> redis::RedisResult<Holding> {
        ConfirmLeaseArgs {
            owner: self.owner,
            ttl: self.ttl,
            from,
        }
        .invocation()
        .key(&self.key)
        .key(&self.status_key)
        .invoke_async(&mut self.redis.clone())
        .await
    }
}

/// Confirms every lease for one call from `from`, all at once, and says who holds each,
/// lease by lease. (One script call per lease, not a pipeline: on a Redis Cluster the
/// leases live in many slots, and one master down must not hold up the others.)
pub async fn confirm_all(leases: &[&Lease], from: &SentFrom) -> Vec<redis::RedisResult<Holding>> {
    futures_util::future::join_all(leases.iter().map(|lease| lease.confirm(from))).await
}
