//! The worker's access to stored codes: start a delivery (one round trip), retire a
//! code it gave up on, and finish a delivery by remembering that WATI accepted it.

use std::sync::LazyLock;
use std::time::Duration;

use otp_shared::job::SendJob;
use otp_shared::keys::Keys;
use otp_shared::status::STATUS_TTL_SECONDS;
use redis::Script;
use redis::aio::ConnectionManager;
use uuid::Uuid;

static START: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/start_delivery.lua")));
static HOLD_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hold_lease.lua")));
static FINISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/finish_delivery.lua")));
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
    /// WATI already accepted this request (a redelivered or re-published copy).
    Delivered,
    /// This request already failed for good (a copy whose dead-lettering did not
    /// complete): dead-letter it again with the stored reason.
    Failed { reason: String },
    /// Another worker is delivering a copy of this job right now.
    Busy,
    /// Ready to send; the lease is taken and status `sending` is recorded.
    Pending(StoredCode),
    /// Past its expiry.
    Expired,
    /// Verified, exhausted, removed, or replaced by a newer code.
    Gone,
}

/// What became of a delivery lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// Another worker delivers a copy of the job and will finish it.
    TakenByAnother,
    /// Nobody holds it: it lapsed, and a copy may have finished meanwhile.
    Lapsed,
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

    /// Checks the delivered mark, loads the sealed code if it is still the job's and
    /// unexpired, takes the delivery lease for `owner` for `lease`, and then records
    /// status `sending`.
    pub async fn start_delivery(
        &self,
        job: &SendJob,
        owner: &str,
        lease: Duration,
    ) -> redis::RedisResult<CodeLookup> {
        let request_id = job.request_id.to_string();
        let (outcome, sealed, expires_at, now): (String, Vec<u8>, u64, u64) = START
            .key(self.keys.otp(&job.phone))
            .key(self.keys.delivered(&request_id))
            .key(self.keys.status(&request_id))
            .key(self.keys.delivery_lease(&request_id))
            .arg(job.code_id.to_string())
            .arg(STATUS_TTL_SECONDS)
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match outcome.as_str() {
            "delivered" => CodeLookup::Delivered,
            "failed" => CodeLookup::Failed {
                reason: String::from_utf8_lossy(&sealed).into_owned(),
            },
            "expired" => CodeLookup::Expired,
            "busy" => CodeLookup::Busy,
            "pending" => CodeLookup::Pending(StoredCode {
                sealed,
                time_left: Duration::from_millis(expires_at.saturating_sub(now)),
            }),
            _ => CodeLookup::Gone,
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

    /// Extends the delivery lease by `lease` (or releases it, for `Duration::ZERO`).
    pub async fn hold_lease(
        &self,
        request_id: Uuid,
        owner: &str,
        lease: Duration,
    ) -> redis::RedisResult<Lease> {
        let held: i64 = HOLD_LEASE
            .key(self.keys.delivery_lease(&request_id.to_string()))
            .arg(owner)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match held {
            1 => Lease::Held,
            0 => Lease::TakenByAnother,
            _ => Lease::Lapsed,
        })
    }

    /// Marks the request delivered and its status `sent` (counting the call that
    /// succeeded), releases the lease, and marks the code as having reached the user.
    pub async fn finish_delivery(&self, job: &SendJob) -> redis::RedisResult<()> {
        let request_id = job.request_id.to_string();
        let _: i64 = FINISH
            .key(self.keys.delivered(&request_id))
            .key(self.keys.status(&request_id))
            .key(self.keys.delivery_lease(&request_id))
            .key(self.keys.otp(&job.phone))
            .arg(self.delivered_ttl.as_secs().max(1))
            .arg(STATUS_TTL_SECONDS)
            .arg(job.code_id.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}
