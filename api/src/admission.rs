//! Admission: a send is accepted only if the workers can hand it to WATI before its
//! code expires, at the configured budgets. Every api replica reserves in one Redis
//! sorted set of the sends admitted and not yet handed over, atomically, so a burst of
//! any speed is admitted only as far as the budgets reach; the rest get 503 at once.
//! How much fits is `Budgets::capacity` (in `otp_shared::budget`).

use std::sync::LazyLock;
use std::time::Duration;

use otp_shared::budget::{Budgets, Capacity};
use otp_shared::keys::Keys;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ParsingError, Script, Value};
use uuid::Uuid;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/admit.lua")));

/// What a reservation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Admitted; `pending` sends (this one included) now wait for WATI.
    Admitted { pending: u64 },
    /// No room: `pending` sends already wait, as many as the budgets can deliver.
    Full { pending: u64 },
    /// No budget is set, so nothing is counted.
    Unlimited,
}

impl FromRedisValue for Reservation {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (admitted, pending): (i64, u64) = FromRedisValue::from_redis_value(v)?;
        match admitted {
            1 => Ok(Reservation::Admitted { pending }),
            0 => Ok(Reservation::Full { pending }),
            other => Err(format!("admit.lua answered {other}").into()),
        }
    }
}

pub struct Admission {
    redis: ConnectionManager,
    key: String,
    capacity: Capacity,
    code_ttl: Duration,
}

impl Admission {
    pub fn new(
        redis: ConnectionManager,
        keys: &Keys,
        budgets: &Budgets,
        code_ttl: Duration,
    ) -> Self {
        let capacity = budgets.capacity(code_ttl);
        if let Capacity::Sends { sends, .. } = capacity {
            metrics::gauge!(otp_shared::metrics::SEND_CAPACITY).set(sends as f64);
        }
        Self {
            redis,
            key: keys.pending_sends(),
            capacity,
            code_ttl,
        }
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Reserves room for the send `request_id`, if there is any.
    pub async fn reserve(&self, request_id: Uuid) -> redis::RedisResult<Reservation> {
        let Capacity::Sends { sends, .. } = self.capacity else {
            return Ok(Reservation::Unlimited);
        };
        let reservation: Reservation = ADMIT
            .key(&self.key)
            .arg(sends)
            .arg(request_id.to_string())
            .arg(self.code_ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        if let Reservation::Admitted { pending } | Reservation::Full { pending } = reservation {
            metrics::gauge!(otp_shared::metrics::SEND_BACKLOG).set(pending as f64);
        }
        Ok(reservation)
    }

    /// Gives back the room of a send that was not queued after all.
    pub async fn release(&self, request_id: Uuid) -> redis::RedisResult<()> {
        if matches!(self.capacity, Capacity::Unlimited) {
            return Ok(());
        }
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(request_id.to_string())
            .exec_async(&mut self.redis.clone())
            .await
    }

    /// How long a refused client should wait with `pending` sends ahead of it.
    pub fn retry_after(&self, pending: u64) -> Duration {
        self.capacity.retry_after(pending)
    }
}
