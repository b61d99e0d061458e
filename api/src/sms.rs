//! SMS in the api: the settings, the budget an SMS the app asks for counts against, the
//! fallback a WhatsApp failure receipt begins, and Twilio's status callbacks (what one
//! says, read defensively; they never hold the message body).

use otp_shared::phone::PhoneNumber;
use otp_shared::redis::keys::Delivery;
use otp_shared::redis::send_budget::SendBudget;
use otp_shared::sms::SmsSettings;
use otp_shared::sms_fallback::SmsFallback;
use uuid::Uuid;

use crate::receipts::Event;

/// SMS, when it is on.
#[derive(Clone)]
pub struct SmsApi {
    pub settings: SmsSettings,
    /// `SMS_SENDS_PER_MINUTE`.
    pub budget: SendBudget,
    pub fallback: SmsFallback,
}

/// Twilio's words for a failed message, by its `ErrorCode`
/// (twilio.com/docs/api/errors); others get the general reason.
const KNOWN_ERRORS: &[(&str, &str)] = &[
    ("30003", "Unreachable destination handset"),
    ("30004", "Message blocked"),
    ("30005", "Unknown destination handset"),
    ("30006", "Landline or unreachable carrier"),
    ("30007", "Message filtered as spam"),
    ("30008", "Unknown error"),
    ("21610", "Recipient unsubscribed"),
];
/// The reason of a failure Twilio gave no known code for.
const DEFAULT_FAILURE: &str = "The SMS could not be delivered";

/// One status callback, as far as it concerns a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsReceipt {
    /// The send, from the query the worker gave the callback URL.
    pub request_id: Uuid,
    /// Which of the request's deliveries: its first, or its SMS fallback.
    pub delivery: Delivery,
    /// `To`, where it reads as a phone.
    pub phone: Option<PhoneNumber>,
    pub event: Event,
}

/// Why a callback is no callback of ours.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a status callback of one of our sends")]
pub struct NotOurs;

impl SmsReceipt {
    /// Reads a callback from its URL's query (`request=<id>&fallback=0|1`, as the
    /// worker wrote it) and its form parameters.
    pub fn parse(query: &str, params: &[(String, String)]) -> Result<Self, NotOurs> {
        let from_query = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
        };
        let request_id = from_query("request")
            .and_then(|id| Uuid::parse_str(&id).ok())
            .ok_or(NotOurs)?;
        let delivery = match from_query("fallback").as_deref() {
            Some("1") => Delivery::Fallback,
            Some("0") | None => Delivery::First,
            Some(_) => return Err(NotOurs),
        };
        let phone = param("To")
            .and_then(|to| to.strip_prefix('+'))
            .and_then(|digits| PhoneNumber::from_e164_digits(digits).ok());
        let event = match param("MessageStatus").ok_or(NotOurs)? {
            "sent" => Event::Sent,
            "delivered" => Event::Delivered,
            "read" => Event::Read,
            "failed" | "undelivered" => {
                let code = param("ErrorCode").unwrap_or_default();
                let code: String = code.chars().filter(char::is_ascii_digit).take(8).collect();
                let reason = KNOWN_ERRORS
                    .iter()
                    .find(|(known, _)| *known == code)
                    .map_or(DEFAULT_FAILURE, |(_, reason)| reason);
                Event::Failed {
                    code,
                    reason: reason.to_owned(),
                }
            }
            // queued, sending, accepted, scheduled, canceled, …: nothing to record.
            _ => Event::Other,
        };
        Ok(Self {
            request_id,
            delivery,
            phone,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_callback_names_its_send_delivery_phone_and_event() {
        let id = Uuid::new_v4();
        let delivered = SmsReceipt::parse(
            &format!("request={id}&fallback=1"),
            &params(&[
                ("MessageSid", "SM0123"),
                ("MessageStatus", "delivered"),
                ("To", "+447700900123"),
            ]),
        )
        .expect("ours");
        assert_eq!(delivered.request_id, id);
        assert_eq!(delivered.delivery, Delivery::Fallback);
        assert_eq!(
            delivered.phone.as_ref().map(PhoneNumber::as_str),
            Some("447700900123")
        );
        assert_eq!(delivered.event, Event::Delivered);
        let failed = SmsReceipt::parse(
            &format!("request={id}&fallback=0"),
            &params(&[("MessageStatus", "undelivered"), ("ErrorCode", "30006")]),
        )
        .expect("ours");
        assert_eq!(failed.delivery, Delivery::First);
        assert_eq!(
            failed.event,
            Event::Failed {
                code: "30006".into(),
                reason: "Landline or unreachable carrier".into()
            }
        );
        let queued = SmsReceipt::parse(
            &format!("request={id}"),
            &params(&[("MessageStatus", "queued")]),
        )
        .expect("ours");
        assert_eq!(queued.event, Event::Other);
    }

    #[test]
    fn a_callback_without_our_query_or_a_status_is_not_ours() {
        let id = Uuid::new_v4();
        let status = params(&[("MessageStatus", "delivered")]);
        assert_eq!(SmsReceipt::parse("", &status), Err(NotOurs));
        assert_eq!(SmsReceipt::parse("request=nope", &status), Err(NotOurs));
        assert_eq!(
            SmsReceipt::parse(&format!("request={id}&fallback=2"), &status),
            Err(NotOurs)
        );
        assert_eq!(
            SmsReceipt::parse(&format!("request={id}"), &[]),
            Err(NotOurs)
        );
    }
}
