//! Delivery status of each send request, read by `GET /api/auth/otp-status/{requestId}`.
//! The send script writes `queued`; the worker's deliveries (`delivery`) write
//! `sending`, `sent`, `failed` and `expired`; WATI's receipts (`receipts`) write
//! `delivered`, `read` and `failed`. The hash's layout is [`super::records::status`].

use redis::ParsingError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conn::RedisConn;
use super::keys::{Delivery, Keys};
use super::records::{channel, state, status as fields};
use crate::phone::PhoneNumber;

/// How long a status stays readable after its last update.
pub const STATUS_TTL_SECONDS: i64 = 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Queued,
    Sending,
    Sent,
    Failed,
    Expired,
    Delivered,
    Read,
}

impl DeliveryState {
    const ALL: [DeliveryState; 7] = [
        DeliveryState::Queued,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Failed,
        DeliveryState::Expired,
        DeliveryState::Delivered,
        DeliveryState::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => state::QUEUED,
            DeliveryState::Sending => state::SENDING,
            DeliveryState::Sent => state::SENT,
            DeliveryState::Failed => state::FAILED,
            DeliveryState::Expired => state::EXPIRED,
            DeliveryState::Delivered => state::DELIVERED,
            DeliveryState::Read => state::READ,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// How a send's code went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Whatsapp,
    Sms,
    /// A review phone (`TEST_PHONES`): no provider was called.
    Test,
}

impl Channel {
    const ALL: [Channel; 3] = [Channel::Whatsapp, Channel::Sms, Channel::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Whatsapp => channel::WHATSAPP,
            Channel::Sms => channel::SMS,
            Channel::Test => channel::TEST,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One delivery of a request as stored: its first, or its SMS fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub channel: Channel,
    pub state: DeliveryState,
    /// Calls made to the provider for it.
    pub attempts: u32,
    pub updated_at_ms: u64,
    pub reason: Option<String>,
    /// The provider's own explanation, where it gave one.
    pub info: Option<String>,
    /// When it was delivered and read (Unix ms), where known.
    pub delivered_at_ms: Option<u64>,
    pub read_at_ms: Option<u64>,
    /// The provider's error code, for a failure receipt.
    pub failed_code: Option<String>,
}

/// One request's status: its first delivery, and its SMS fallback if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRecord {
    pub first: DeliveryRecord,
    pub fallback: Option<DeliveryRecord>,
}

impl StatusRecord {
    /// The delivery tried last: the fallback if there is one.
    pub fn latest(&self) -> &DeliveryRecord {
        self.fallback.as_ref().unwrap_or(&self.first)
    }
}

/// The status hash's fields as HMGET returns them.
type StoredFields = (
    Option<String>,
    Option<u32>,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Option<String>,
);

/// Reads status records (and settles review phones' sends, which no worker sees).
#[derive(Clone)]
pub struct StatusStore {
    redis: RedisConn,
    keys: Keys,
}

impl StatusStore {
    pub fn new(redis: RedisConn, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Records a send to a review phone as `sent` on the channel `test`: nothing goes
    /// to a provider, and its fixed code verifies as soon as the send is accepted.
    pub async fn settle_review_send(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
    ) -> redis::RedisResult<()> {
        let key = self.keys.status(phone, request_id);
        redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    (fields::STATE, state::SENT.to_owned()),
                    (fields::CHANNEL, channel::TEST.to_owned()),
                    (fields::UPDATED_AT, crate::now_ms().to_string()),
                ],
            )
            .expire(&key, STATUS_TTL_SECONDS)
            .exec_async(&mut self.redis.clone())
            .await
    }

    /// The phone a send request was for, while its status lives.
    pub async fn phone_of(&self, request_id: Uuid) -> redis::RedisResult<Option<PhoneNumber>> {
        let phone: Option<String> = redis::cmd("GET")
            .arg(self.keys.request_phone(request_id))
            .query_async(&mut self.redis.clone())
            .await?;
        // Only the api writes it, from a checked phone: anything else is a bug.
        phone
            .map(|digits| {
                PhoneNumber::from_e164_digits(&digits).map_err(|_| {
                    ParsingError::from(format!("the index of send {request_id} names no phone"))
                        .into()
                })
            })
            .transpose()
    }

    /// The status of a send request, found by its id alone (two round trips: its phone,
    /// then its deliveries' records, which live in the phone's hash slot).
    pub async fn get(&self, request_id: Uuid) -> redis::RedisResult<Option<StatusRecord>> {
        let Some(phone) = self.phone_of(request_id).await? else {
            return Ok(None);
        };
        let read = |delivery| {
            redis::cmd("HMGET")
                .arg(self.keys.status_of(&phone, request_id, delivery))
                .arg(fields::STATE)
                .arg(fields::ATTEMPTS)
                .arg(fields::UPDATED_AT)
                .arg(fields::REASON)
                .arg(fields::INFO)
                .arg(fields::DELIVERED_AT)
                .arg(fields::READ_AT)
                .arg(fields::FAILED_CODE)
                .arg(fields::CHANNEL)
                .to_owned()
        };
        let (first, fallback): (StoredFields, StoredFields) = redis::pipe()
            .add_command(read(Delivery::First))
            .add_command(read(Delivery::Fallback))
            .query_async(&mut self.redis.clone())
            .await?;
        let Some(first) = delivery_record(request_id, first)? else {
            return Ok(None);
        };
        Ok(Some(StatusRecord {
            first,
            fallback: delivery_record(request_id, fallback)?,
        }))
    }
}

/// A delivery's record from its stored fields; `None` when there is none.
fn delivery_record(
    request_id: Uuid,
    (state, attempts, updated_at, reason, info, delivered_at, read_at, failed_code, channel): StoredFields,
) -> redis::RedisResult<Option<DeliveryRecord>> {
    let Some(state) = state else {
        return Ok(None);
    };
    let state = DeliveryState::parse(&state).ok_or_else(|| {
        ParsingError::from(format!(
            "send {request_id} has the unknown status {state:?}"
        ))
    })?;
    let channel = match channel {
        None => Channel::Whatsapp,
        Some(name) => Channel::parse(&name).ok_or_else(|| {
            ParsingError::from(format!(
                "send {request_id} has the unknown channel {name:?}"
            ))
        })?,
    };
    Ok(Some(DeliveryRecord {
        channel,
        state,
        attempts: attempts.unwrap_or(0),
        updated_at_ms: updated_at.unwrap_or(0),
        reason,
        info,
        delivered_at_ms: delivered_at,
        read_at_ms: read_at,
        failed_code,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_itself_and_has_a_rank() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            assert!(
                crate::redis::records::state::RANKS
                    .iter()
                    .any(|(name, _)| *name == state.as_str()),
                "{state:?} has no rank"
            );
        }
        assert_eq!(DeliveryState::parse("bounced"), None);
    }

    #[test]
    fn every_channel_reads_back_as_itself() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("pigeon"), None);
    }
}
