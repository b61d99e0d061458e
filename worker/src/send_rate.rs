//! The provider send rate shared by all workers: WATI allows only so many sends per
//! second per account, so every call to WATI first reserves a slot in Redis.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reserve_send.lua")));

#[derive(Clone)]
pub struct SendRate {
    redis: ConnectionManager,
    key: String,
    interval: Duration,
}

impl SendRate {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(redis: ConnectionManager, key: String, per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            redis,
            key,
            interval: Duration::from_secs(1) / per_second,
        })
    }

    /// Reserves the next send slot if it comes within `max_wait`, and returns how long
    /// to wait for it; `None` (nothing reserved) when it comes later.
    pub async fn reserve(&self, max_wait: Duration) -> redis::RedisResult<Option<Duration>> {
        let (reserved, wait_us): (u8, u64) = RESERVE
            .key(&self.key)
            .arg(self.interval.as_micros() as u64)
            .arg(max_wait.as_micros() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((reserved == 1).then(|| Duration::from_micros(wait_us)))
    }
}
