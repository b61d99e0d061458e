//! The code store: accepting a send, undoing it, verifying a guess and counting client
//! requests, each one atomic Lua script in Redis so the rules hold across replicas.
//! Field names in the scripts come from `otp_shared::records`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use otp_shared::keys::Keys;
use otp_shared::records;
use otp_shared::redis_conn::RedisConn;
use otp_shared::seal::CodeSealer;
use otp_shared::status::STATUS_TTL_SECONDS;
use redis::{FromRedisValue, ParsingError, Script, Value};
use uuid::Uuid;

use crate::config::Limits;
use crate::phone::PhoneNumber;

/// The api's scripts, as templates (for the placeholder test).
pub const TEMPLATES: &[&str] = &[
    include_str!("lua/send.lua"),
    include_str!("lua/undo_send.lua"),
    include_str!("lua/verify.lua"),
    include_str!("lua/client_limit.lua"),
    include_str!("lua/finish_verify.lua"),
];

static SEND: LazyLock<Script> = LazyLock::new(|| records::script(TEMPLATES[0]));
static UNDO_SEND: LazyLock<Script> = LazyLock::new(|| records::script(TEMPLATES[1]));
static VERIFY: LazyLock<Script> = LazyLock::new(|| records::script(TEMPLATES[2]));
static CLIENT_LIMIT: LazyLock<Script> = LazyLock::new(|| records::script(TEMPLATES[3]));
static FINISH_VERIFY: LazyLock<Script> = LazyLock::new(|| records::script(TEMPLATES[4]));

/// How long a right guess holds its code while its login is written: longer than the
/// database may take (its pool gives up after 2 s).
const CLAIM_FOR: Duration = Duration::from_secs(10);

/// Whether a send stored a new code or re-sends the pending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    New,
    Resend,
}

impl SendKind {
    /// How much of a shared budget of `total` sends this kind may take: new codes leave
    /// a tenth (rounded down) to re-sends of codes already pending, so that when a flood
    /// of new numbers drains a budget, a user whose code has not come can still ask again.
    pub fn share_of(self, total: u64) -> u64 {
        match self {
            SendKind::New => total - total / 10,
            SendKind::Resend => total,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SendKind::New => "new",
            SendKind::Resend => "resend",
        }
    }
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
    Limited {
        retry_after: Duration,
    },
    /// Nothing was stored: the phone has had too many wrong guesses, and a new code
    /// for it must have [`LONG_CODE_DIGITS`] digits.
    NeedsLongerCode,
}

/// Digits of the codes of a phone that has had too many wrong guesses: each guess is
/// then ten thousand times less likely to hit than with six digits.
pub const LONG_CODE_DIGITS: u32 = 10;
/// How long a phone's count of wrong guesses lives after the last one. Long, and not
/// cleared by a login: an attacker who could reset it by waiting a day (or whenever the
/// owner logs in) would get a fresh hundred guesses at short codes each time.
const WRONG_GUESSES_WINDOW: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Right: the code is claimed for this request until it spends or releases it.
    Verified,
    /// Right, but another request is logging in with this code right now.
    Claimed,
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
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error("the code could not be sealed")]
    Seal(#[from] otp_shared::seal::SealError),
}

impl StoreError {
    /// Whether Redis could not answer (rather than our code going wrong).
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Redis(e) => otp_shared::redis_conn::is_outage(e),
            StoreError::Seal(_) => false,
        }
    }
}

/// send.lua's answer.
enum SendReply {
    Accepted {
        kind: SendKind,
        code_id: Uuid,
        expires_in: Duration,
    },
    Limited {
        retry_after: Duration,
    },
    Longer,
}

impl FromRedisValue for SendReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (kind, code_id, ms): (String, String, u64) = FromRedisValue::from_redis_value(v)?;
        let accepted = |kind| -> Result<Self, ParsingError> {
            Ok(SendReply::Accepted {
                kind,
                code_id: Uuid::parse_str(&code_id)
                    .map_err(|e| format!("send.lua answered a code id that is not a UUID: {e}"))?,
                expires_in: Duration::from_millis(ms),
            })
        };
        match kind.as_str() {
            "limited" => Ok(SendReply::Limited {
                retry_after: Duration::from_millis(ms),
            }),
            "new" => accepted(SendKind::New),
            "resend" => accepted(SendKind::Resend),
            "longer" => Ok(SendReply::Longer),
            other => Err(format!("send.lua answered {other:?}").into()),
        }
    }
}

impl FromRedisValue for VerifyOutcome {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (outcome, remaining): (String, u32) = FromRedisValue::from_redis_value(v)?;
        Ok(match outcome.as_str() {
            "ok" => VerifyOutcome::Verified,
            "claimed" => VerifyOutcome::Claimed,
            "not_found" => VerifyOutcome::NotFound,
            "expired" => VerifyOutcome::Expired,
            "locked" => VerifyOutcome::Locked,
            "wrong" => VerifyOutcome::Wrong { remaining },
            other => return Err(format!("verify.lua answered {other:?}").into()),
        })
    }
}

/// Settings the store needs from the api configuration.
#[derive(Clone, Debug)]
pub struct StorePolicy {
    pub ttl: Duration,
    pub max_attempts: u32,
    /// Wrong guesses for one phone across its codes (until 90 days after the last)
    /// before its new codes grow; 0 is no cap.
    pub wrong_guesses_per_phone: u32,
    pub limits: Limits,
}

#[derive(Clone)]
pub struct OtpStore {
    redis: RedisConn,
    keys: Keys,
    sealer: Arc<CodeSealer>,
    policy: StorePolicy,
}

impl OtpStore {
    pub fn new(redis: RedisConn, keys: Keys, sealer: Arc<CodeSealer>, policy: StorePolicy) -> Self {
        Self {
            redis,
            keys,
            sealer,
            policy,
        }
    }

    /// Applies the per-phone limits and stores `code` for request `request_id` unless a
    /// code is pending, in which case that one is re-sent and `code` is thrown away.
    pub async fn begin_send(
        &self,
        phone: &PhoneNumber,
        code: &str,
        request_id: Uuid,
    ) -> Result<SendDecision, StoreError> {
        let new_code_id = Uuid::new_v4();
        let mac = self.sealer.mac(phone, code);
        let sealed = self.sealer.seal(phone, code)?;
        let ttl_ms = self.policy.ttl.as_millis() as u64;
        let limits = &self.policy.limits;
        let reply: SendReply = SEND
            .key(self.keys.otp(phone))
            .key(self.keys.cooldown(phone))
            .key(self.keys.phone_sends(phone))
            .key(self.keys.status(phone, request_id))
            .key(self.keys.wrong_guesses(phone))
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
            .arg(phone.as_str())
            .arg(code.len())
            .arg(LONG_CODE_DIGITS)
            .arg(self.policy.wrong_guesses_per_phone)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match reply {
            SendReply::Limited { retry_after } => SendDecision::Limited { retry_after },
            SendReply::Longer => SendDecision::NeedsLongerCode,
            SendReply::Accepted {
                kind,
                code_id,
                expires_in,
            } => {
                let send = AcceptedSend {
                    kind,
                    request_id,
                    code_id,
                    expires_in,
                };
                if let Err(e) = self.index_request(phone, request_id).await {
                    // Without it the send's status could not be found: take it back.
                    if let Err(undo) = self.undo_send(phone, &send).await {
                        tracing::warn!(error = %undo, "could not take back a send");
                    }
                    return Err(e);
                }
                SendDecision::Accepted(send)
            }
        })
    }

    /// Remembers which phone `request_id` is for, as long as its status lives, so its
    /// status (kept in the phone's hash slot) can be found from the id alone.
    async fn index_request(&self, phone: &PhoneNumber, request_id: Uuid) -> Result<(), StoreError> {
        // The worker renews the status's life as it goes, for up to a code's life and a
        // few retries: the index outlives it by a day rather than a minute.
        let _: () = redis::cmd("SET")
            .arg(self.keys.request_phone(request_id))
            .arg(phone.as_str())
            .arg("EX")
            .arg(2 * STATUS_TTL_SECONDS)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Takes back an accepted send whose job could not be published.
    pub async fn undo_send(
        &self,
        phone: &PhoneNumber,
        send: &AcceptedSend,
    ) -> Result<(), StoreError> {
        let undone: redis::RedisResult<i64> = UNDO_SEND
            .key(self.keys.otp(phone))
            .key(self.keys.cooldown(phone))
            .key(self.keys.phone_sends(phone))
            .key(self.keys.status(phone, send.request_id))
            .arg(send.kind.as_str())
            .arg(send.code_id.to_string())
            .arg(send.request_id.to_string())
            .invoke_async(&mut self.redis.clone())
            .await;
        // The index goes whatever the script did (another slot on a Redis Cluster).
        let unindexed: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.keys.request_phone(send.request_id))
            .query_async(&mut self.redis.clone())
            .await;
        undone?;
        unindexed?;
        Ok(())
    }

    /// Checks a guess, bound to the send `bound_to` or to none; a right one claims the
    /// code for `claim`.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        code: &str,
        bound_to: Option<Uuid>,
        claim: Uuid,
    ) -> Result<VerifyOutcome, StoreError> {
        let mac = self.sealer.mac(phone, code);
        Ok(VERIFY
            .key(self.keys.otp(phone))
            .key(self.keys.wrong_guesses(phone))
            .arg(&mac[..])
            .arg(self.policy.max_attempts)
            .arg(claim.to_string())
            .arg(CLAIM_FOR.as_millis() as u64)
            .arg(bound_to.map(|id| id.to_string()).unwrap_or_default())
            .arg(WRONG_GUESSES_WINDOW.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    /// Spends the code `claim` holds; `false` if the claim lapsed and another took it.
    pub async fn spend(&self, phone: &PhoneNumber, claim: Uuid) -> Result<bool, StoreError> {
        self.finish_verify(phone, claim, "spend").await
    }

    /// Gives the code `claim` holds back, for another try with it.
    pub async fn release(&self, phone: &PhoneNumber, claim: Uuid) -> Result<bool, StoreError> {
        self.finish_verify(phone, claim, "release").await
    }

    async fn finish_verify(
        &self,
        phone: &PhoneNumber,
        claim: Uuid,
        how: &str,
    ) -> Result<bool, StoreError> {
        let held: i64 = FINISH_VERIFY
            .key(self.keys.otp(phone))
            .arg(claim.to_string())
            .arg(how)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(held == 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_codes_leave_a_tenth_of_a_budget_to_re_sends() {
        assert_eq!(SendKind::New.share_of(100), 90);
        assert_eq!(SendKind::New.share_of(28), 26);
        assert_eq!(SendKind::New.share_of(9), 9);
        assert_eq!(SendKind::New.share_of(0), 0);
        assert_eq!(SendKind::Resend.share_of(28), 28);
    }

    #[test]
    fn every_script_names_only_known_fields() {
        for template in TEMPLATES {
            assert_eq!(
                records::unknown_placeholders(template),
                Vec::<String>::new(),
                "{template}"
            );
        }
    }

    fn bulk(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|i| Value::BulkString(i.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn an_unknown_script_reply_is_an_error_not_a_guess() {
        assert!(VerifyOutcome::from_redis_value(bulk(&["wrong", "2"])).is_ok());
        assert!(VerifyOutcome::from_redis_value(bulk(&["maybe", "0"])).is_err());
        let id = Uuid::new_v4().to_string();
        assert!(SendReply::from_redis_value(bulk(&["resend", &id, "1000"])).is_ok());
        assert!(SendReply::from_redis_value(bulk(&["new", "not-a-uuid", "1000"])).is_err());
        assert!(SendReply::from_redis_value(bulk(&["queued", &id, "1000"])).is_err());
    }
}
