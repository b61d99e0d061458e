//! The api's code store: seals codes and holds sends and guesses to the configured
//! rules, through the code records of `otp_shared::redis::codes` (one atomic script
//! each, so the rules hold across replicas) and the per-client request count.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use otp_shared::redis::client_limit::ClientLimit;
use otp_shared::redis::codes::{
    CodeRecords, Finish, Finished, GuessRules, NewCode, SendReply, SendRules,
};
pub use otp_shared::redis::codes::{HowSent, SendKind, VerifyOutcome};
use otp_shared::redis::conn::RedisConn;
use otp_shared::redis::keys::Keys;
use otp_shared::seal::CodeSealer;
use uuid::Uuid;

use crate::config::Limits;
use crate::phone::PhoneNumber;

/// How long a right guess holds its code while its login is written: longer than the
/// database may take (its pool gives up after 2 s).
const CLAIM_FOR: Duration = Duration::from_secs(10);

/// A send the store took; the job for it still has to be published.
#[derive(Clone, Debug)]
pub struct AcceptedSend {
    pub kind: SendKind,
    pub request_id: Uuid,
    pub code_id: Uuid,
    /// What is left of the code's lifetime.
    pub expires_in: Duration,
    /// A re-send of a code the phone already received.
    pub received: bool,
    /// The wait before the phone's next send.
    pub cooldown: Duration,
}

impl AcceptedSend {
    /// The kind of send the budgets count it as: the room kept for re-sends is for users
    /// whose code has not come, so a re-send of a code the phone received counts as new
    /// (an attacker re-sending the codes it asked for gets no reserve).
    pub fn budget_kind(&self) -> SendKind {
        if self.received {
            SendKind::New
        } else {
            self.kind
        }
    }
}

#[derive(Clone, Debug)]
pub enum SendDecision {
    Accepted(AcceptedSend),
    Limited {
        retry_after: Duration,
        /// A code is pending for the phone: its user may have it.
        code_pending: bool,
    },
    /// Nothing was stored: the phone's sends this hour need a human check.
    CheckRequired {
        /// A code is pending for the phone: its user may have it.
        code_pending: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error("the code could not be sealed")]
    Seal(#[from] otp_shared::seal::SealError),
}

impl crate::error::DependencyError for StoreError {
    fn is_outage(&self) -> bool {
        match self {
            StoreError::Redis(e) => otp_shared::redis::is_outage(e),
            StoreError::Seal(_) => false,
        }
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
    /// With the human check on, the sends a phone gets in an hour without one; 0: off.
    pub unchecked_sends_per_hour: u32,
}

/// The api's codes: seals them and holds them to the configured rules in Redis.
#[derive(Clone)]
pub struct OtpStore {
    records: CodeRecords,
    clients: ClientLimit,
    sealer: Arc<CodeSealer>,
    send_rules: SendRules,
    guess_rules: GuessRules,
}

impl OtpStore {
    pub fn new(redis: RedisConn, keys: Keys, sealer: Arc<CodeSealer>, policy: StorePolicy) -> Self {
        let limits = &policy.limits;
        Self {
            clients: ClientLimit::new(
                redis.clone(),
                &keys,
                limits.ip_requests_per_minute,
                limits.ip_network_requests_per_minute,
            ),
            records: CodeRecords::new(redis, keys),
            sealer,
            send_rules: SendRules {
                ttl: policy.ttl,
                resend_cooldown: limits.resend_cooldown,
                max_sends_per_code: limits.max_sends_per_code,
                phone_sends_per_hour: limits.phone_sends_per_hour,
                unchecked_sends_per_hour: policy.unchecked_sends_per_hour,
                wrong_guesses_per_phone: policy.wrong_guesses_per_phone,
                long_code_digits: LONG_CODE_DIGITS,
            },
            guess_rules: GuessRules {
                max_attempts: policy.max_attempts,
                claim_for: CLAIM_FOR,
                wrong_guesses_window: WRONG_GUESSES_WINDOW,
            },
        }
    }

    /// Applies the per-phone limits and stores `code` for request `request_id` unless a
    /// code is pending, in which case that one is re-sent and `code` is thrown away.
    pub async fn begin_send(
        &self,
        phone: &PhoneNumber,
        code: &str,
        request_id: Uuid,
        how: HowSent,
    ) -> Result<SendDecision, StoreError> {
        let mac = self.sealer.mac(phone, code);
        let sealed = self.sealer.seal(phone, code)?;
        let new_code = NewCode {
            code_id: Uuid::new_v4(),
            mac: &mac,
            sealed: &sealed,
            digits: code.len() as u32,
        };
        let reply = self
            .records
            .begin_send(phone, request_id, &new_code, &self.send_rules, how)
            .await?;
        Ok(match reply {
            SendReply::Limited {
                retry_after,
                code_pending,
            } => SendDecision::Limited {
                retry_after,
                code_pending,
            },
            SendReply::CheckRequired { code_pending } => {
                SendDecision::CheckRequired { code_pending }
            }
            SendReply::NeedsLongerCode => SendDecision::NeedsLongerCode,
            SendReply::Accepted {
                kind,
                code_id,
                expires_in,
                received,
                cooldown,
            } => SendDecision::Accepted(AcceptedSend {
                kind,
                request_id,
                code_id,
                expires_in,
                received,
                cooldown,
            }),
        })
    }

    /// Remembers which phone `request_id` is for, so its status can be found from the
    /// id alone.
    pub async fn index_request(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
    ) -> Result<(), StoreError> {
        Ok(self.records.index_request(phone, request_id).await?)
    }

    /// Forgets the index of a send taken back.
    pub async fn unindex_request(&self, request_id: Uuid) -> Result<(), StoreError> {
        Ok(self.records.unindex_request(request_id).await?)
    }

    /// Takes back an accepted send whose job could not be published (its index is
    /// the caller's to remove).
    pub async fn undo_send(
        &self,
        phone: &PhoneNumber,
        send: &AcceptedSend,
    ) -> Result<(), StoreError> {
        Ok(self
            .records
            .undo_send(phone, send.request_id, send.kind, send.code_id)
            .await?)
    }

    /// Checks a guess, bound to the send `bound_to` or to none; a right one claims the
    /// code for `claim`.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        code: &str,
        bound_to: Option<Uuid>,
        client: Option<std::net::IpAddr>,
        claim: Uuid,
    ) -> Result<VerifyOutcome, StoreError> {
        let mac = self.sealer.mac(phone, code);
        Ok(self
            .records
            .verify(phone, &mac, bound_to, client, claim, &self.guess_rules)
            .await?)
    }

    /// Spends the code `claim` holds; `false` if the claim lapsed and another took it.
    pub async fn spend(&self, phone: &PhoneNumber, claim: Uuid) -> Result<bool, StoreError> {
        let finished = self.records.finish(phone, claim, Finish::Spend).await?;
        Ok(finished == Finished::Done)
    }

    /// Gives the code `claim` holds back, for another try with it.
    pub async fn release(&self, phone: &PhoneNumber, claim: Uuid) -> Result<bool, StoreError> {
        let finished = self.records.finish(phone, claim, Finish::Release).await?;
        Ok(finished == Finished::Done)
    }

    /// Counts a request of a client; `Some(wait)` when over the limit.
    pub async fn count_client_request(
        &self,
        client: IpAddr,
    ) -> Result<Option<Duration>, StoreError> {
        Ok(self.clients.count(client).await?)
    }
}
