//! Users and sessions, kept in Redis: a phone maps to one user id; a session is the
//! token's `jti` with the token's lifetime, deleted on logout.

use std::time::Duration;

use otp_shared::keys::Keys;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::phone::PhoneNumber;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub phone: String,
    pub created_at: String,
    pub last_login_at: String,
}

#[derive(Clone)]
pub struct UserStore {
    redis: ConnectionManager,
    keys: Keys,
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl UserStore {
    pub fn new(redis: ConnectionManager, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Loads the user of `phone`, creating it on first login. Returns whether it is new.
    pub async fn login(&self, phone: &PhoneNumber) -> redis::RedisResult<(User, bool)> {
        let mut redis = self.redis.clone();
        let candidate = Uuid::new_v4().to_string();
        // SET NX GET: one step that either claims the phone or returns its owner.
        let existing: Option<String> = redis::cmd("SET")
            .arg(self.keys.user_by_phone(phone))
            .arg(&candidate)
            .arg("NX")
            .arg("GET")
            .query_async(&mut redis)
            .await?;
        let now = now_rfc3339();
        let is_new = existing.is_none();
        let id = existing.unwrap_or(candidate);
        let key = self.keys.user(&id);
        if is_new {
            let _: () = redis
                .hset_multiple(
                    &key,
                    &[
                        ("id", id.as_str()),
                        ("phone", phone.as_str()),
                        ("createdAt", now.as_str()),
                        ("lastLoginAt", now.as_str()),
                    ],
                )
                .await?;
        } else {
            let _: () = redis.hset(&key, "lastLoginAt", &now).await?;
        }
        let user = self.get(&id).await?.unwrap_or(User {
            id,
            phone: phone.as_str().to_owned(),
            created_at: now.clone(),
            last_login_at: now,
        });
        Ok((user, is_new))
    }

    pub async fn get(&self, id: &str) -> redis::RedisResult<Option<User>> {
        let (id_field, phone, created_at, last_login_at): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = redis::cmd("HMGET")
            .arg(self.keys.user(id))
            .arg("id")
            .arg("phone")
            .arg("createdAt")
            .arg("lastLoginAt")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(match (id_field, phone, created_at) {
            (Some(id), Some(phone), Some(created_at)) => Some(User {
                id,
                phone,
                last_login_at: last_login_at.unwrap_or_else(|| created_at.clone()),
                created_at,
            }),
            _ => None,
        })
    }

    /// Records a session for the token's lifetime.
    pub async fn open_session(
        &self,
        jti: &str,
        user_id: &str,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        self.redis
            .clone()
            .set_ex(self.keys.session(jti), user_id, ttl.as_secs().max(1))
            .await
    }

    /// Whether the session of `jti` is live and belongs to `user_id`.
    pub async fn session_is_live(&self, jti: &str, user_id: &str) -> redis::RedisResult<bool> {
        let owner: Option<String> = self.redis.clone().get(self.keys.session(jti)).await?;
        Ok(owner.as_deref() == Some(user_id))
    }

    pub async fn close_session(&self, jti: &str) -> redis::RedisResult<()> {
        self.redis.clone().del(self.keys.session(jti)).await
    }
}
