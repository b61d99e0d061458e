//! The worker's access to stored codes: load one to send it, retire one it gave up on,
//! and remember which requests WATI already accepted.

use std::sync::LazyLock;
use std::time::Duration;

use otp_shared::keys::Keys;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

static LOAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/load_code.lua")));
static RETIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/retire_code.lua")));

/// A stored code, still sealed.
pub struct StoredCode {
    pub sealed: Vec<u8>,
    /// What is left of its life, by Redis's clock.
    pub time_left: Duration,
}

/// What the store holds for a job.
pub enum CodeLookup {
    Pending(StoredCode),
    /// Past its expiry.
    Expired,
    /// Verified, exhausted, removed, or replaced by a newer code.
    Gone,
}

/// How to retire a code.
#[derive(Clone, Copy, Debug)]
pub enum Retire {
    /// Delivery failed for good: remove the record.
    Delete,
    /// Could not deliver before expiry: remove the code, keep the record so verify
    /// answers "expired".
    Expire,
}

#[derive(Clone)]
pub struct CodeStore {
    redis: ConnectionManager,
    keys: Keys,
    /// How long a delivered marker is kept: longer than any code can live.
    delivered_ttl: Duration,
}

impl CodeStore {
    pub fn new(redis: ConnectionManager, keys: Keys, code_ttl: Duration) -> Self {
        Self {
            redis,
            keys,
            delivered_ttl: code_ttl * 2,
        }
    }

    pub async fn load(&self, phone: &str, code_id: Uuid) -> redis::RedisResult<CodeLookup> {
        let (stored_id, sealed, expires_at, now): (String, Vec<u8>, u64, u64) = LOAD
            .key(self.keys.otp(phone))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(if stored_id != code_id.to_string() || sealed.is_empty() {
            if stored_id == code_id.to_string() && expires_at <= now {
                CodeLookup::Expired
            } else {
                CodeLookup::Gone
            }
        } else if expires_at <= now {
            CodeLookup::Expired
        } else {
            CodeLookup::Pending(StoredCode {
                sealed,
                time_left: Duration::from_millis(expires_at - now),
            })
        })
    }

    pub async fn retire(&self, phone: &str, code_id: Uuid, how: Retire) -> redis::RedisResult<()> {
        let mode = match how {
            Retire::Delete => "delete",
            Retire::Expire => "expire",
        };
        let _: i64 = RETIRE
            .key(self.keys.otp(phone))
            .arg(code_id.to_string())
            .arg(mode)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    pub async fn was_delivered(&self, request_id: Uuid) -> redis::RedisResult<bool> {
        self.redis
            .clone()
            .exists(self.keys.delivered(&request_id.to_string()))
            .await
    }

    pub async fn mark_delivered(&self, request_id: Uuid) -> redis::RedisResult<()> {
        self.redis
            .clone()
            .set_ex(
                self.keys.delivered(&request_id.to_string()),
                1,
                self.delivered_ttl.as_secs().max(1),
            )
            .await
    }
}
