//! The code store: accepting a send, undoing it, verifying a guess and counting client
//! requests, each one atomic Lua script in Redis so the rules hold across replicas.

use std::sync::Arc;
use std::time::Duration;

use otp_shared::keys::Keys;
use otp_shared::seal::CodeSealer;
use otp_shared::status::STATUS_TTL_SECONDS;
use redis::Script;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::config::Limits;
use crate::phone::PhoneNumber;

static SEND: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/send.lua")));
static UNDO_SEND: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/undo_send.lua")));
static VERIFY: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/verify.lua")));
static CLIENT_LIMIT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/client_limit.lua")));

/// Whether a send stored a new code or re-sends the pending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    New,
    Resend,
}

/// A send the store took; the job for it still has to be published.
#[derive(Clone, Debug)]
pub struct AcceptedSend {
    pub kind: SendKind,
    pub request_id: Uuid,
    pub code_id: Uuid,
    /// What is left of the code's lifetime.
    pub expires_in: Duration,
}

#[derive(Clone, Debug)]
pub enum SendDecision {
    Accepted(AcceptedSend),
    Limited { retry_after: Duration },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified,
    NotFound,
    Expired,
    /// The attempt cap was reached earlier; the code is gone.
    Locked,
    Wrong {
        remaining: u32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the code store answered something unexpected: {0}")]
    Unexpected(String),
    #[error("the code could not be sealed: {0}")]
    Seal(#[from] otp_shared::seal::SealError),
}

/// Settings the store needs from the api configuration.
#[derive(Clone, Debug)]
pub struct StorePolicy {
    pub ttl: Duration,
    pub max_attempts: u32,
    pub limits: Limits,
}

#[derive(Clone)]
pub struct OtpStore {
    redis: ConnectionManager,
    keys: Keys,
    sealer: Arc<CodeSealer>,
    policy: StorePolicy,
}

impl OtpStore {
    pub fn new(
        redis: ConnectionManager,
        keys: Keys,
        sealer: Arc<CodeSealer>,
        policy: StorePolicy,
    ) -> Self {
        Self {
            redis,
            keys,
            sealer,
            policy,
        }
    }

    /// Applies the per-phone limits and stores `code` unless a code is pending, in
    /// which case that one is re-sent and `code` is thrown away.
    pub async fn begin_send(
        &self,
        phone: &PhoneNumber,
        code: &str,
    ) -> Result<SendDecision, StoreError> {
        let phone = phone.as_str();
        let request_id = Uuid::new_v4();
        let new_code_id = Uuid::new_v4();
        let mac = self.sealer.mac(phone, code);
        let sealed = self.sealer.seal(phone, code)?;
        let ttl_ms = self.policy.ttl.as_millis() as u64;
        let limits = &self.policy.limits;
        let (kind, code_id, ms): (String, String, u64) = SEND
            .key(self.keys.otp(phone))
            .key(self.keys.cooldown(phone))
            .key(self.keys.phone_sends(phone))
            .key(self.keys.status(&request_id.to_string()))
            .arg(new_code_id.to_string())
            .arg(&mac[..])
            .arg(sealed)
            .arg(ttl_ms)
            .arg(ttl_ms)
            .arg(limits.resend_cooldown_seconds * 1000)
            .arg(limits.max_sends_per_code)
            .arg(limits.phone_sends_per_hour)
            .arg(request_id.to_string())
            .arg(STATUS_TTL_SECONDS)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let kind = match kind.as_str() {
            "limited" => {
                return Ok(SendDecision::Limited {
                    retry_after: Duration::from_millis(ms),
                });
            }
            "new" => SendKind::New,
            "resend" => SendKind::Resend,
            other => return Err(StoreError::Unexpected(other.to_owned())),
        };
        let code_id =
            Uuid::parse_str(&code_id).map_err(|e| StoreError::Unexpected(e.to_string()))?;
        Ok(SendDecision::Accepted(AcceptedSend {
            kind,
            request_id,
            code_id,
            expires_in: Duration::from_millis(ms),
        }))
    }

    /// Takes back an accepted send whose job could not be published.
    pub async fn undo_send(
        &self,
        phone: &PhoneNumber,
        send: &AcceptedSend,
    ) -> Result<(), StoreError> {
        let phone = phone.as_str();
        let kind = match send.kind {
            SendKind::New => "new",
            SendKind::Resend => "resend",
        };
        let _: i64 = UNDO_SEND
            .key(self.keys.otp(phone))
            .key(self.keys.cooldown(phone))
            .key(self.keys.phone_sends(phone))
            .key(self.keys.status(&send.request_id.to_string()))
            .arg(kind)
            .arg(send.code_id.to_string())
            .arg(send.request_id.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        code: &str,
    ) -> Result<VerifyOutcome, StoreError> {
        let mac = self.sealer.mac(phone.as_str(), code);
        let (outcome, remaining): (String, u32) = VERIFY
            .key(self.keys.otp(phone.as_str()))
            .arg(&mac[..])
            .arg(self.policy.max_attempts)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match outcome.as_str() {
            "ok" => VerifyOutcome::Verified,
            "not_found" => VerifyOutcome::NotFound,
            "expired" => VerifyOutcome::Expired,
            "locked" => VerifyOutcome::Locked,
            "wrong" => VerifyOutcome::Wrong { remaining },
            other => return Err(StoreError::Unexpected(other.to_owned())),
        })
    }

    /// Counts a request of a client address; `Some(wait)` when over the limit.
    pub async fn count_client_request(&self, addr: &str) -> Result<Option<Duration>, StoreError> {
        let limit = self.policy.limits.ip_requests_per_minute;
        if limit == 0 {
            return Ok(None);
        }
        let wait_ms: u64 = CLIENT_LIMIT
            .key(self.keys.client_requests(addr))
            .arg(limit)
            .arg(60_000)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}
