//! Users and sessions. Users and refresh sessions live in PostgreSQL, so a phone keeps
//! its user id and a login keeps its session whatever happens to Redis (a re-login would
//! cost a paid WhatsApp message). Access-token sessions (each access token's `jti`) live
//! in Redis: losing them costs a refresh, nothing more.

use std::time::Duration;

use aws_lc_rs::digest;
use otp_shared::redis::sessions::AccessSessions;
use otp_shared::redis::{Keys, RedisConn};
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::phone::PhoneNumber;

/// Random bytes in a refresh token.
const REFRESH_TOKEN_BYTES: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub phone: String,
    pub created_at: String,
    pub last_login_at: String,
}

/// A login: the user (created on first login) and a new refresh session.
#[derive(Debug)]
pub struct Login {
    pub user: User,
    pub is_new: bool,
    pub session_id: Uuid,
    /// Given to the client once; only its hash is stored.
    pub refresh_token: String,
}

/// What presenting a refresh token got.
pub enum Refresh {
    /// Live: rotate it once the new access token is recorded.
    Rotating(PendingRefresh),
    /// Unknown, expired or revoked.
    Refused,
    /// Already used: someone else may hold a copy, and its whole session is ended.
    Reused { session_id: Uuid, user_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("postgres")]
    Db(#[from] sqlx::Error),
    #[error("postgres did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error("the random source failed")]
    Random(#[from] getrandom::Error),
}

impl crate::error::DependencyError for UserError {
    fn is_outage(&self) -> bool {
        match self {
            UserError::Db(e) => crate::db::is_outage(e),
            UserError::TimedOut(_) => true,
            UserError::Redis(e) => otp_shared::redis::is_outage(e),
            UserError::Random(_) => false,
        }
    }
}

#[derive(Clone)]
pub struct UserStore {
    pool: PgPool,
    access: AccessSessions,
    refresh_ttl: Duration,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A new refresh token (hex of random bytes) and the hash that is stored.
fn new_refresh_token() -> Result<(String, Vec<u8>), getrandom::Error> {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

type UserRow = (Uuid, String, OffsetDateTime, OffsetDateTime);

/// Runs `work` against PostgreSQL for at most [`crate::db::QUERY_TIMEOUT`]: a server
/// or network that hangs costs a 503, not a request that never ends.
async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, UserError>>,
) -> Result<T, UserError> {
    let limit = crate::db::QUERY_TIMEOUT;
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(UserError::TimedOut(limit)))
}

impl UserStore {
    pub fn new(
        pool: PgPool,
        redis: RedisConn,
        keys: Keys,
        refresh_ttl: Duration,
        access_ttl: Duration,
    ) -> Self {
        Self {
            pool,
            access: AccessSessions::new(redis, keys, access_ttl),
            refresh_ttl,
        }
    }

    /// Logs `phone` in with the code `code_id`: creates its user on first login (one
    /// user, also under concurrent first logins) or records the login, and opens a
    /// refresh session, in one statement. New when this login made the user, or when the
    /// same code made it (a retry of a first login whose answer was lost).
    pub async fn login(&self, phone: &PhoneNumber, code_id: Uuid) -> Result<Login, UserError> {
        bounded(self.write_login(phone, code_id)).await
    }

    async fn write_login(&self, phone: &PhoneNumber, code_id: Uuid) -> Result<Login, UserError> {
        let session_id = Uuid::new_v4();
        let (refresh_token, hash) = new_refresh_token()?;
        let (id, phone, created_at, last_login_at, is_new): (
            Uuid,
            String,
            OffsetDateTime,
            OffsetDateTime,
            bool,
        ) = sqlx::query_as(
            "WITH u AS (
                 INSERT INTO users (id, phone, first_code) VALUES ($1, $2, $6)
                 ON CONFLICT (phone) DO UPDATE SET last_login_at = now()
                 RETURNING id, phone, created_at, last_login_at,
                     -- A user made before migration 0002 has no first code: not new.
                     (xmax = 0 OR users.first_code IS NOT DISTINCT FROM $6) AS is_new
             ), s AS (
                 INSERT INTO refresh_sessions (id, user_id, expires_at)
                 SELECT $3, id, now() + make_interval(secs => $4) FROM u
                 RETURNING id
             ), t AS (
                 INSERT INTO refresh_tokens (token_hash, session_id)
                 SELECT $5, id FROM s
                 RETURNING session_id
             )
             SELECT u.id, u.phone, u.created_at, u.last_login_at, u.is_new FROM u, t",
        )
        .bind(Uuid::new_v4())
        .bind(phone.as_str())
        .bind(session_id)
        .bind(self.refresh_ttl.as_secs_f64())
        .bind(hash)
        .bind(code_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Login {
            user: User {
                id,
                phone,
                created_at: rfc3339(created_at),
                last_login_at: rfc3339(last_login_at),
            },
            is_new,
            session_id,
            refresh_token,
        })
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<User>, UserError> {
        bounded(self.read_user(id)).await
    }

    async fn read_user(&self, id: Uuid) -> Result<Option<User>, UserError> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, phone, created_at, last_login_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, phone, created_at, last_login_at)| User {
            id,
            phone,
            created_at: rfc3339(created_at),
            last_login_at: rfc3339(last_login_at),
        }))
    }

    /// Looks a refresh token up and holds it (a row lock) until the caller commits the
    /// rotation or drops it. A token used before ends its whole session (someone else
    /// may hold a copy); so does one presented twice at once (one wins, the other ends
    /// the session).
    pub async fn refresh(&self, token: &str) -> Result<Refresh, UserError> {
        bounded(self.hold_refresh_token(token)).await
    }

    async fn hold_refresh_token(&self, token: &str) -> Result<Refresh, UserError> {
        let mut tx = self.pool.begin().await?;
        let presented = token_hash(token);
        let found: Option<(Uuid, Option<OffsetDateTime>, Uuid, String, bool)> = sqlx::query_as(
            "SELECT t.session_id, t.used_at, s.user_id, u.phone,
                    s.revoked_at IS NULL AND s.expires_at > now()
             FROM refresh_tokens t
             JOIN refresh_sessions s ON s.id = t.session_id
             JOIN users u ON u.id = s.user_id
             WHERE t.token_hash = $1
             FOR UPDATE OF t",
        )
        .bind(&presented)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((session_id, used_at, user_id, phone, live)) = found else {
            return Ok(Refresh::Refused);
        };
        if used_at.is_some() {
            revoke(&mut *tx, session_id).await?;
            tx.commit().await?;
            self.mark_revoked(session_id).await?;
            tracing::warn!(%session_id, "a used refresh token came back; its session is ended");
            return Ok(Refresh::Reused {
                session_id,
                user_id,
            });
        }
        if !live {
            return Ok(Refresh::Refused);
        }
        Ok(Refresh::Rotating(PendingRefresh {
            tx,
            options: self.pool.connect_options(),
            presented,
            user_id,
            phone,
            session_id,
        }))
    }

    /// Deletes what no login needs any more, at most `batch` rows per statement and
    /// `rounds` statements of each kind per call (so that one call never holds a table
    /// for long): sessions ended or expired more than a day ago, with their tokens, and
    /// tokens spent more than a day ago. A replay of a token spent longer ago is then
    /// refused without ending its session.
    pub async fn purge(&self, batch: i64, rounds: u32) -> Result<Purged, UserError> {
        let mut purged = Purged::default();
        for (statement, count) in [
            (
                "DELETE FROM refresh_sessions WHERE id IN (
                     SELECT id FROM refresh_sessions
                     WHERE expires_at < now() - interval '1 day'
                        OR revoked_at < now() - interval '1 day'
                     LIMIT $1)",
                &mut purged.sessions,
            ),
            (
                "DELETE FROM refresh_tokens WHERE token_hash IN (
                     SELECT token_hash FROM refresh_tokens
                     WHERE used_at < now() - interval '1 day'
                     LIMIT $1)",
                &mut purged.tokens,
            ),
        ] {
            for _ in 0..rounds {
                let deleted = bounded(async {
                    Ok(sqlx::query(statement)
                        .bind(batch)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                })
                .await?;
                *count += deleted;
                if deleted < batch.unsigned_abs() {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Ends a refresh session (logout, or a login whose code was taken meanwhile), and
    /// with it every access token it gave out.
    pub async fn end_session(&self, session_id: Uuid) -> Result<(), UserError> {
        bounded(async { Ok(revoke(&self.pool, session_id).await?) }).await?;
        self.mark_revoked(session_id).await
    }

    /// Access tokens of `session_id` stop working.
    async fn mark_revoked(&self, session_id: Uuid) -> Result<(), UserError> {
        Ok(self.access.revoke_all(session_id).await?)
    }

    /// Records an access token's session (of refresh session `sid`) for its lifetime.
    pub async fn open_access(&self, sid: Uuid, jti: Uuid, user_id: Uuid) -> Result<(), UserError> {
        Ok(self.access.open(sid, jti, user_id).await?)
    }

    /// Whether the access session of `jti` is live, belongs to `user_id`, and its
    /// refresh session `sid` has not been ended. One round trip.
    pub async fn access_is_live(
        &self,
        sid: Uuid,
        jti: Uuid,
        user_id: Uuid,
    ) -> Result<bool, UserError> {
        Ok(self.access.is_live(sid, jti, user_id).await?)
    }

    pub async fn close_access(&self, sid: Uuid, jti: Uuid) -> Result<(), UserError> {
        Ok(self.access.close(sid, jti).await?)
    }
}

/// What one [`UserStore::purge`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Sessions ended or expired (their tokens went with them).
    pub sessions: u64,
    /// Tokens spent long ago, of sessions still live.
    pub tokens: u64,
}

/// Purges on a schedule until `stop` turns true: every api replica does, and the
/// statements are safe to run side by side.
pub async fn purge_every(
    users: UserStore,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        match users.purge(PURGE_BATCH, PURGE_ROUNDS).await {
            Ok(purged) if purged != Purged::default() => {
                tracing::info!(
                    sessions = purged.sessions,
                    tokens = purged.tokens,
                    "purged old refresh sessions and tokens"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not purge old refresh sessions; tried again later")
            }
        }
    }
}

/// Rows one purge statement deletes at most.
pub const PURGE_BATCH: i64 = 1_000;
/// Statements of each kind one scheduled purge runs at most: 100,000 rows a run.
pub const PURGE_ROUNDS: u32 = 100;

/// Marks a refresh session revoked.
async fn revoke<'e, E>(executor: E, session_id: Uuid) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "UPDATE refresh_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .execute(executor)
    .await
    .map(drop)
}

/// A refresh token found live and held: the new access token is recorded first, and
/// only then is the old refresh token spent ([`PendingRefresh::commit`]), so a failure
/// in between leaves it usable for the client's retry. Dropped, nothing changes.
pub struct PendingRefresh {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// How to open a fresh connection, to find out what a COMMIT whose answer was
    /// lost did.
    options: std::sync::Arc<sqlx::postgres::PgConnectOptions>,
    presented: Vec<u8>,
    pub user_id: Uuid,
    pub phone: String,
    pub session_id: Uuid,
}

impl PendingRefresh {
    /// Spends the presented refresh token; returns the next one. When the COMMIT's
    /// answer does not come, what it did is asked on a fresh connection: a rotation
    /// that landed is answered as one, so the client is not sent to retry with a token
    /// already spent (its retry would be taken as reuse, and end the session).
    pub async fn commit(mut self) -> Result<String, UserError> {
        let (refresh_token, hash) = new_refresh_token()?;
        let (presented, options) = (self.presented.clone(), self.options.clone());
        let next = hash.clone();
        let committed = bounded(async move {
            sqlx::query(
                "WITH spent AS (UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1)
                 INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($2, $3)",
            )
            .bind(&self.presented)
            .bind(next)
            .bind(self.session_id)
            .execute(&mut *self.tx)
            .await?;
            self.tx.commit().await?;
            Ok(())
        })
        .await;
        match committed {
            Ok(()) => Ok(refresh_token),
            Err(e) => match bounded(rotated(&options, &presented, &hash)).await {
                Ok(true) => {
                    tracing::warn!(error = %e, "a refresh's COMMIT answer was lost; it had landed");
                    Ok(refresh_token)
                }
                _ => Err(e),
            },
        }
    }
}

/// Whether `presented` was spent for `next`, asked on a connection of its own (the
/// transaction's may be the one that lost its answer). The presented token's row is
/// read `FOR SHARE`: while the rotation's transaction still holds it (its COMMIT under
/// way, or its connection not yet seen gone), the read waits for it to end either way.
async fn rotated(
    options: &sqlx::postgres::PgConnectOptions,
    presented: &[u8],
    next: &[u8],
) -> Result<bool, UserError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(options).await?;
    // Two statements: the second's snapshot is taken after the first's wait, so it
    // sees the successor a COMMIT that landed meanwhile wrote.
    let spent: Option<bool> = sqlx::query_scalar(
        "SELECT used_at IS NOT NULL FROM refresh_tokens WHERE token_hash = $1 FOR SHARE",
    )
    .bind(presented)
    .fetch_optional(&mut conn)
    .await?;
    let (successor,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE token_hash = $1)")
            .bind(next)
            .fetch_one(&mut conn)
            .await?;
    let landed = spent == Some(true) && successor;
    let _ = conn.close().await;
    Ok(landed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_stored_only_as_a_hash() {
        let (a, hash_a) = new_refresh_token().expect("random");
        let (b, _) = new_refresh_token().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), REFRESH_TOKEN_BYTES * 2);
        assert_eq!(hash_a, token_hash(&a));
        assert_ne!(hash_a, a.as_bytes());
    }
}
