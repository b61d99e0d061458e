//! Access-token sessions: each access token's `jti` lives in Redis as long as the token,
//! beside a mark that its refresh session has ended. Both carry the refresh session's
//! id as their hash tag, so checking a token is one MGET on one node.

use std::time::Duration;

use redis::AsyncCommands;
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::Keys;

#[derive(Clone)]
pub struct AccessSessions {
    redis: RedisConn,
    keys: Keys,
    /// How long an access token lives, and so its session and a revocation mark.
    access_ttl: Duration,
}

impl AccessSessions {
    pub fn new(redis: RedisConn, keys: Keys, access_ttl: Duration) -> Self {
        Self {
            redis,
            keys,
            access_ttl,
        }
    }

    fn ttl_seconds(&self) -> u64 {
        self.access_ttl.as_secs().max(1)
    }

    /// Records the session of access token `jti` (of refresh session `sid`, for user
    /// `user_id`) for the token's lifetime.
    pub async fn open(&self, sid: Uuid, jti: Uuid, user_id: Uuid) -> redis::RedisResult<()> {
        self.redis
            .clone()
            .set_ex(
                self.keys.session(sid, jti),
                user_id.to_string(),
                self.ttl_seconds(),
            )
            .await
    }

    /// Whether the session of `jti` is live, belongs to `user_id`, and its refresh
    /// session `sid` has not ended. One round trip.
    pub async fn is_live(&self, sid: Uuid, jti: Uuid, user_id: Uuid) -> redis::RedisResult<bool> {
        let (owner, revoked): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(self.keys.session(sid, jti))
            .arg(self.keys.revoked_session(sid))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(owner == Some(user_id.to_string()) && revoked.is_none())
    }

    /// Ends the session of access token `jti` (logout).
    pub async fn close(&self, sid: Uuid, jti: Uuid) -> redis::RedisResult<()> {
        self.redis.clone().del(self.keys.session(sid, jti)).await
    }

    /// Every access token of refresh session `sid` stops working: a mark that outlives
    /// the longest of them.
    pub async fn revoke_all(&self, sid: Uuid) -> redis::RedisResult<()> {
        self.redis
            .clone()
            .set_ex(self.keys.revoked_session(sid), 1, self.ttl_seconds())
            .await
    }
}
