//! The one place that moves a send's status in the worker: `sending` when its delivery
//! starts, then `sent`, `failed` or `expired`, with the calls made counted. A WhatsApp
//! send and an SMS send are delivered alike; an SMS fallback has records of its own
//! beside its request's first delivery. Each step
//! is one Lua script that also looks after the code record, the delivery lease and the
//! api's admission count (a send leaves it when it is finished), so a status never
//! disagrees with them.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::{Delivery, Keys};
use super::lease::Lease;
use super::scripts::{Argv, COUNT_CALL, END_DELIVERY, Lua, MARK_SENT, START_DELIVERY, ScriptArgs};
use super::status::{DeliveryState, STATUS_TTL_SECONDS};
use super::words::delivery as word;
use crate::job::{JobChannel, SendJob};
use crate::senders::SentFrom;

/// The reason a send that could not reach WATI before its code expired is given.
pub const EXPIRED_REASON: &str = "Failed to send OTP";
/// The reason a job whose code was verified, replaced or removed is given.
pub const GONE_REASON: &str = "code no longer pending";

/// What the start of a delivery found.
#[derive(Debug)]
pub enum Start {
    /// WATI already accepted this request (a redelivered or re-published copy).
    Delivered,
    /// This request already failed for good (a copy whose dead-lettering did not
    /// complete): dead-letter it again with the stored reason.
    Failed { reason: String },
    /// Another worker is delivering a copy of this job right now.
    Busy,
    /// Past its expiry.
    Expired,
    /// Verified, exhausted, removed, or replaced by a newer code.
    Gone,
    /// Ready to send: the lease is taken and the status is `sending`.
    Pending {
        sealed: Vec<u8>,
        /// What is left of the code's life, by Redis's clock.
        time_left: Duration,
    },
}

impl FromRedisValue for Start {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut items = Vec::<Value>::from_redis_value(v)?.into_iter();
        let kind = String::from_redis_value(items.next().ok_or("an empty reply")?)?;
        let mut next = || items.next().ok_or("a reply too short");
        Ok(match kind.as_str() {
            word::DELIVERED => Start::Delivered,
            word::FAILED => Start::Failed {
                reason: String::from_redis_value(next()?)?,
            },
            word::BUSY => Start::Busy,
            word::EXPIRED => Start::Expired,
            word::GONE => Start::Gone,
            word::PENDING => Start::Pending {
                sealed: Vec::<u8>::from_redis_value(next()?)?,
                time_left: Duration::from_millis(u64::from_redis_value(next()?)?),
            },
            other => return Err(format!("start_delivery.lua answered {other:?}").into()),
        })
    }
}

/// How a send that will not reach WATI ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// WATI refused it for good, or it cannot be sent at all: the code is deleted.
    Failed {
        reason: String,
        info: Option<String>,
    },
    /// Its code expired before it could be handed over: the code is removed, the
    /// record kept so that verify answers "expired".
    Expired,
    /// Its code is no longer the phone's pending code: nothing to retire.
    Gone,
}

/// What end_delivery.lua does with the code record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Retire {
    /// Drops it: verify then answers "not found".
    Delete,
    /// Keeps the record without the code and ends its life now: verify answers
    /// "expired".
    Expire,
    /// Leaves it alone: the code is no longer this send's.
    Keep,
}

impl Retire {
    fn word(self) -> &'static str {
        match self {
            Retire::Delete => word::DELETE,
            Retire::Expire => word::EXPIRE,
            Retire::Keep => word::KEEP,
        }
    }
}

/// start_delivery.lua's arguments (and the status's life, always
/// [`STATUS_TTL_SECONDS`]).
pub(crate) struct StartDeliveryArgs {
    /// The job's code: anything else in the record means the job is gone.
    pub code_id: Uuid,
    /// The lease to take, and for how long.
    pub lease_owner: Uuid,
    pub lease_for: Duration,
}

impl ScriptArgs for StartDeliveryArgs {
    fn script() -> &'static Lua {
        &START_DELIVERY
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self {
            code_id,
            lease_owner,
            lease_for,
        } = self;
        argv.push(code_id.to_string())
            .push(STATUS_TTL_SECONDS)
            .push(lease_owner.to_string())
            .push_ms(*lease_for);
    }
}

/// count_call.lua's argument: the status's life, always [`STATUS_TTL_SECONDS`].
pub(crate) struct CountCallArgs;

impl ScriptArgs for CountCallArgs {
    fn script() -> &'static Lua {
        &COUNT_CALL
    }

    fn write(&self, argv: &mut Argv) {
        argv.push(STATUS_TTL_SECONDS);
    }
}

/// mark_sent.lua's arguments (and the status's life, always [`STATUS_TTL_SECONDS`]).
pub(crate) struct MarkSentArgs<'a> {
    /// How long the delivered mark lives (whole seconds, at least one).
    pub delivered_for: Duration,
    /// The code the send was for: the record is marked delivered only if it still
    /// holds it.
    pub code_id: Uuid,
    /// The lease to release, if still this delivery's.
    pub lease_owner: Uuid,
    /// The number a WhatsApp message went from.
    pub from: Option<&'a SentFrom>,
    /// The send's languages, comma-separated.
    pub locales: String,
}

impl ScriptArgs for MarkSentArgs<'_> {
    fn script() -> &'static Lua {
        &MARK_SENT
    }

    fn write(&self, argv: &mut Argv) {
        let Self {
            delivered_for,
            code_id,
            lease_owner,
            from,
            locales,
        } = self;
        argv.push(delivered_for.as_secs().max(1))
            .push(STATUS_TTL_SECONDS)
            .push(code_id.to_string())
            .push(lease_owner.to_string())
            .push(from.map_or("", |f| f.sender.name()))
            .push(u8::from(from.is_some_and(|f| f.probe)))
            .push(locales.as_str());
    }
}

/// end_delivery.lua's arguments (and the status's life, always
/// [`STATUS_TTL_SECONDS`]).
pub(crate) struct EndDeliveryArgs<'a> {
    /// The code the send was for: only that one is retired.
    pub code_id: Uuid,
    /// The final status, and why.
    pub state: DeliveryState,
    pub reason: &'a str,
    /// WATI's own explanation, where it gave one.
    pub info: Option<&'a str>,
    /// Calls made just now, to count.
    pub calls: u32,
    /// The lease to release, if still this delivery's.
    pub lease_owner: Uuid,
    pub retire: Retire,
}

impl ScriptArgs for EndDeliveryArgs<'_> {
    fn script() -> &'static Lua {
        &END_DELIVERY
    }

    fn write(&self, argv: &mut Argv) {
        let Self {
            code_id,
            state,
            reason,
            info,
            calls,
            lease_owner,
            retire,
        } = self;
        argv.push(code_id.to_string())
            .push(state.as_str())
            .push(*reason)
            .push(info.unwrap_or(""))
            .push(*calls)
            .push(STATUS_TTL_SECONDS)
            .push(lease_owner.to_string())
            .push(retire.word());
    }
}

/// The worker's access to the records of a send.
#[derive(Clone)]
pub struct Ledger {
    redis: RedisConn,
    keys: Keys,
    /// How long a delivered mark is kept: longer than any code can live.
    delivered_ttl: Duration,
    /// How long one hold of a delivery lease lasts.
    lease_ttl: Duration,
}

impl Ledger {
    pub fn new(redis: RedisConn, keys: Keys, code_ttl: Duration, lease_ttl: Duration) -> Self {
        Self {
            redis,
            keys,
            delivered_ttl: code_ttl * 2,
            lease_ttl,
        }
    }

    /// A lease for delivering `job`, not yet taken.
    pub fn lease(&self, job: &SendJob) -> Lease {
        Lease::new(
            self.redis.clone(),
            self.keys
                .lease_of(&job.phone, job.request_id, delivery_of(job)),
            self.status(job),
            self.lease_ttl,
        )
    }

    /// How long the lease on `job`'s delivery still lasts, whoever holds it; `None`
    /// when nobody does.
    pub async fn lease_left(&self, job: &SendJob) -> redis::RedisResult<Option<Duration>> {
        let ms: i64 = redis::cmd("PTTL")
            .arg(
                self.keys
                    .lease_of(&job.phone, job.request_id, delivery_of(job)),
            )
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// The status record of `job`'s delivery.
    fn status(&self, job: &SendJob) -> String {
        self.keys
            .status_of(&job.phone, job.request_id, delivery_of(job))
    }

    /// The delivered mark of `job`'s delivery.
    fn delivered(&self, job: &SendJob) -> String {
        self.keys
            .delivered_of(&job.phone, job.request_id, delivery_of(job))
    }

    /// Checks the job against the records; if it can be sent, takes `lease` and moves
    /// the status to `sending`.
    pub async fn start(&self, job: &SendJob, lease: &Lease) -> redis::RedisResult<Start> {
        StartDeliveryArgs {
            code_id: job.code_id,
            lease_owner: lease.owner(),
            lease_for: lease.ttl(),
        }
        .invocation()
        .key(self.keys.otp(&job.phone))
        .key(self.delivered(job))
        .key(self.status(job))
        .key(lease.key())
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// Counts a call that did not end the send.
    pub async fn count_call(&self, job: &SendJob) -> redis::RedisResult<()> {
        CountCallArgs
            .invocation()
            .key(self.status(job))
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Marks the send `sent` (its call counted) and remembers that WATI took it.
    pub async fn mark_sent(
        &self,
        job: &SendJob,
        lease: &Lease,
        from: Option<&SentFrom>,
    ) -> redis::RedisResult<()> {
        let locales: Vec<&str> = job.locales.iter().map(|l| l.as_str()).collect();
        let () = MarkSentArgs {
            delivered_for: self.delivered_ttl,
            code_id: job.code_id,
            lease_owner: lease.owner(),
            from,
            locales: locales.join(","),
        }
        .invocation()
        .key(self.delivered(job))
        .key(self.status(job))
        .key(lease.key())
        .key(self.keys.otp(&job.phone))
        .invoke_async(&mut self.redis.clone())
        .await?;
        self.no_longer_pending(job).await;
        Ok(())
    }

    /// Takes the send out of the api's admission count (a WhatsApp send's only). Apart from the script that
    /// settled the send (another hash slot on a Redis Cluster), and best effort: should
    /// it fail, the entry leaves by itself once its time to deliver has passed, and the
    /// settled send must not be settled again.
    async fn no_longer_pending(&self, job: &SendJob) {
        if job.channel != JobChannel::Whatsapp {
            return;
        }
        let removed: redis::RedisResult<()> = redis::cmd("ZREM")
            .arg(self.keys.pending_sends())
            .arg(job.request_id.to_string())
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, request_id = %job.request_id, "could not take a settled send out of the admission count; it leaves when its time is up");
        }
    }

    /// Ends the send as `ending` says, counting `calls` made for it just now.
    pub async fn end(
        &self,
        job: &SendJob,
        lease: &Lease,
        ending: &Ending,
        calls: u32,
    ) -> redis::RedisResult<()> {
        let (state, reason, info, retire) = match ending {
            Ending::Failed { reason, info } => (
                DeliveryState::Failed,
                reason.as_str(),
                info.as_deref(),
                Retire::Delete,
            ),
            Ending::Expired => (DeliveryState::Expired, EXPIRED_REASON, None, Retire::Expire),
            Ending::Gone => (DeliveryState::Expired, GONE_REASON, None, Retire::Keep),
        };
        let () = EndDeliveryArgs {
            code_id: job.code_id,
            state,
            reason,
            info,
            calls,
            lease_owner: lease.owner(),
            retire,
        }
        .invocation()
        .key(self.keys.otp(&job.phone))
        .key(self.status(job))
        .key(lease.key())
        .invoke_async(&mut self.redis.clone())
        .await?;
        self.no_longer_pending(job).await;
        Ok(())
    }
}

/// Which of its request's deliveries a job is: an SMS fallback's records are its own.
fn delivery_of(job: &SendJob) -> Delivery {
    if job.fallback {
        Delivery::Fallback
    } else {
        Delivery::First
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_start_reply_is_an_error_not_a_guess() {
        let reply = |items: Vec<&str>| {
            Start::from_redis_value(Value::Array(
                items
                    .into_iter()
                    .map(|i| Value::BulkString(i.as_bytes().to_vec()))
                    .collect(),
            ))
        };
        assert!(matches!(reply(vec!["busy"]), Ok(Start::Busy)));
        assert!(matches!(
            reply(vec!["failed", "WATI API authentication failed"]),
            Ok(Start::Failed { reason }) if reason == "WATI API authentication failed"
        ));
        assert!(matches!(
            reply(vec!["pending", "sealed", "1500"]),
            Ok(Start::Pending { time_left, .. }) if time_left == Duration::from_millis(1500)
        ));
        assert!(reply(vec!["maybe"]).is_err());
        assert!(reply(vec!["pending"]).is_err());
        assert!(reply(vec![]).is_err());
    }
}
