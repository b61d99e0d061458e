//! Delivery status of each send request, written by the api (`queued`) and the worker
//! (every later step), read by `GET /api/auth/otp-status/{requestId}`.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// How long a status stays readable after its last update.
pub const STATUS_TTL_SECONDS: i64 = 24 * 3600;

/// Field names of the status hash; the api's send script writes the first state.
pub mod fields {
    pub const STATE: &str = "status";
    pub const ATTEMPTS: &str = "attempts";
    pub const UPDATED_AT: &str = "updated_at";
    pub const REASON: &str = "reason";
    pub const INFO: &str = "info";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Queued,
    Sending,
    Sent,
    Failed,
    Expired,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => DeliveryState::Queued,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "failed" => DeliveryState::Failed,
            "expired" => DeliveryState::Expired,
            _ => return None,
        })
    }
}

/// One request's status as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRecord {
    pub state: DeliveryState,
    /// Calls made to WATI for this request.
    pub attempts: u32,
    pub updated_at_ms: u64,
    pub reason: Option<String>,
    /// WATI's own explanation, where it gave one.
    pub info: Option<String>,
}

/// The status hash's fields as HMGET returns them.
type StoredFields = (
    Option<String>,
    Option<u32>,
    Option<u64>,
    Option<String>,
    Option<String>,
);

/// Reads and writes status records.
#[derive(Clone)]
pub struct StatusStore {
    redis: ConnectionManager,
    keys: crate::keys::Keys,
}

impl StatusStore {
    pub fn new(redis: ConnectionManager, keys: crate::keys::Keys) -> Self {
        Self { redis, keys }
    }

    /// Moves a request to `state`, with the failure reason where there is one.
    pub async fn set(
        &self,
        request_id: &str,
        state: DeliveryState,
        reason: Option<&str>,
        info: Option<&str>,
    ) -> redis::RedisResult<()> {
        let key = self.keys.status(request_id);
        let mut pipe = redis::pipe();
        pipe.hset(&key, fields::STATE, state.as_str()).hset(
            &key,
            fields::UPDATED_AT,
            crate::now_ms(),
        );
        if let Some(reason) = reason {
            pipe.hset(&key, fields::REASON, reason);
        }
        if let Some(info) = info {
            pipe.hset(&key, fields::INFO, info);
        }
        pipe.expire(&key, STATUS_TTL_SECONDS);
        pipe.exec_async(&mut self.redis.clone()).await
    }

    /// Counts one call to WATI.
    pub async fn count_attempt(&self, request_id: &str) -> redis::RedisResult<()> {
        let key = self.keys.status(request_id);
        let _: i64 = self.redis.clone().hincr(&key, fields::ATTEMPTS, 1).await?;
        Ok(())
    }

    pub async fn get(&self, request_id: &str) -> redis::RedisResult<Option<StatusRecord>> {
        let key = self.keys.status(request_id);
        let (state, attempts, updated_at, reason, info): StoredFields = redis::cmd("HMGET")
            .arg(&key)
            .arg(fields::STATE)
            .arg(fields::ATTEMPTS)
            .arg(fields::UPDATED_AT)
            .arg(fields::REASON)
            .arg(fields::INFO)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(state
            .as_deref()
            .and_then(DeliveryState::parse)
            .map(|state| StatusRecord {
                state,
                attempts: attempts.unwrap_or(0),
                updated_at_ms: updated_at.unwrap_or(0),
                reason,
                info,
            }))
    }
}
