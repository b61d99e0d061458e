//! `POST {prefix}/2010-04-01/Accounts/{AccountSid}/Messages.json`: Twilio Programmable
//! Messaging's send, modelled on Twilio's documentation (any path prefix, as WATI's
//! tenant path):
//!
//! - The Message resource and its create call
//!   (https://www.twilio.com/docs/messaging/api/message-resource): form-encoded `To`,
//!   `From` or `MessagingServiceSid`, `Body` (or `MediaUrl`), `StatusCallback`,
//!   `ValidityPeriod`; 201 with the resource, `status` `queued`, or `accepted` through a
//!   Messaging Service.
//! - HTTP basic auth with the Account SID and Auth Token
//!   (https://www.twilio.com/docs/usage/requests-to-twilio); else 401 with 20003
//!   "Authenticate" (https://www.twilio.com/docs/api/errors/20003).
//! - The refusals, each code's page at `https://www.twilio.com/docs/api/errors/<code>`:
//!   21604 no `To`; 21211 a `To` not in E.164; 21603 neither `From` nor
//!   `MessagingServiceSid`; 21602 no `Body` or `MediaUrl` (21619 through a Messaging
//!   Service); 21617 a body over 1,600 characters; 21624 a `ValidityPeriod` outside 1 to
//!   36,000 seconds. Scripts (`ScriptedSms`) add 21408, 21610, 21614, 20429, 20500, 20503.
//! - The status callbacks: `sms_callback.rs`.
//!
//! Assumptions (no Twilio page says): the order of the checks above; the shortest E.164
//! number (7 digits); 400 for every 21xxx code; the path's Account SID must be the one
//! authenticated (Twilio's subaccounts and API keys are not modelled); `From` is not
//! checked against the account's numbers (21606); the sandbox answers in JSON only.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::record::{Channel, Message};
use crate::send::{now_ms, with_retry_after};
use crate::sms_callback::{self, Accepted, SERVICE_SENDER};
use crate::sms_record::SmsCall;
use crate::twilio::{self, API_VERSION, Created, MAX_BODY_CHARS, TwilioError, code};
use crate::{Sandbox, form, ids};

/// The Account SID the sandbox answers to unless told otherwise: `AC` and 32 hex digits.
pub const DEFAULT_TWILIO_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its Auth Token unless told otherwise.
pub const DEFAULT_TWILIO_AUTH_TOKEN: &str = "sandbox-token";
/// The longest `ValidityPeriod`, in seconds (https://www.twilio.com/docs/api/errors/21624).
const MAX_VALIDITY_SECS: u64 = 36_000;

/// The Twilio account the sandbox stands in for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwilioAccount {
    /// Must be the path's `{AccountSid}` and the basic-auth user.
    pub account_sid: String,
    /// The basic-auth password, and the key of every callback's `X-Twilio-Signature`.
    pub auth_token: String,
}

impl Default for TwilioAccount {
    fn default() -> Self {
        Self {
            account_sid: DEFAULT_TWILIO_ACCOUNT_SID.into(),
            auth_token: DEFAULT_TWILIO_AUTH_TOKEN.into(),
        }
    }
}

/// What a path under `/2010-04-01/` asks for.
pub(crate) enum TwilioPath<'a> {
    /// `{prefix}/2010-04-01/Accounts/{sid}/Messages.json`.
    Messages {
        prefix: &'a str,
        account_sid: &'a str,
    },
    /// Anything else of Twilio's API: 404 with 20404.
    Other,
}

/// Reads a path (without its leading `/`) as Twilio's, if it is one.
pub(crate) fn twilio_path(path: &str) -> Option<TwilioPath<'_>> {
    let marker = format!("{API_VERSION}/");
    let at = if path.starts_with(&marker) {
        0
    } else {
        path.find(&format!("/{marker}"))? + 1
    };
    let prefix = path[..at].trim_end_matches('/');
    let rest = &path[at + marker.len()..];
    let account_sid = rest
        .strip_prefix("Accounts/")
        .and_then(|r| r.strip_suffix("/Messages.json"))
        .filter(|sid| !sid.is_empty() && !sid.contains('/'));
    Some(match account_sid {
        Some(account_sid) => TwilioPath::Messages {
            prefix,
            account_sid,
        },
        None => TwilioPath::Other,
    })
}

/// The parameters of one send, empty ones taken as missing.
struct Request {
    to: Option<String>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    body: Option<String>,
    has_media: bool,
    status_callback: Option<String>,
    validity_period: Option<String>,
}

impl Request {
    fn from_form(body: &[u8]) -> Self {
        let pairs = form::parse(body);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        Self {
            to: get("To"),
            from: get("From"),
            messaging_service_sid: get("MessagingServiceSid"),
            body: get("Body"),
            has_media: get("MediaUrl").is_some(),
            status_callback: get("StatusCallback"),
            validity_period: get("ValidityPeriod"),
        }
    }

    /// Twilio's checks of a send, in the sandbox's order; the validity period if given.
    fn check(&self) -> Result<Option<Duration>, TwilioError> {
        let to = self.to.as_deref().unwrap_or_default();
        let refuse = |code| Err(TwilioError::new(code, to));
        if self.to.is_none() {
            return refuse(code::TO_REQUIRED);
        }
        if !twilio::is_e164(to) {
            return refuse(code::INVALID_TO);
        }
        if self.from.is_none() && self.messaging_service_sid.is_none() {
            return refuse(code::FROM_REQUIRED);
        }
        if self.body.is_none() && !self.has_media {
            return refuse(match self.messaging_service_sid {
                Some(_) => code::SERVICE_BODY_REQUIRED,
                None => code::BODY_REQUIRED,
            });
        }
        if self.text().chars().count() > MAX_BODY_CHARS {
            return refuse(code::BODY_TOO_LONG);
        }
        match &self.validity_period {
            None => Ok(None),
            Some(given) => match given.parse::<u64>() {
                Ok(secs) if (1..=MAX_VALIDITY_SECS).contains(&secs) => {
                    Ok(Some(Duration::from_secs(secs)))
                }
                _ => refuse(code::INVALID_VALIDITY_PERIOD),
            },
        }
    }

    fn text(&self) -> &str {
        self.body.as_deref().unwrap_or_default()
    }

    /// `To`'s digits, under which the sandbox files and scripts a number.
    fn phone(&self) -> String {
        digits(self.to.as_deref().unwrap_or_default())
    }

    /// The log entry of this request, answered `status`.
    fn call(&self, call_id: u64, prefix: &str, received_at_ms: u64, status: u16) -> SmsCall {
        SmsCall {
            call_id,
            phone: self.phone(),
            to: self.to.clone().unwrap_or_default(),
            from: self.from.clone(),
            messaging_service_sid: self.messaging_service_sid.clone(),
            body: self.text().to_owned(),
            status_callback: self.status_callback.clone(),
            validity_period: self.validity_period.clone(),
            received_at_ms,
            status,
            error_code: None,
            sid: None,
            path_prefix: format!("/{prefix}"),
        }
    }
}

/// The digits of a number, as the sandbox files it.
pub(crate) fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Whether the request authenticates as the account, for the path's Account SID.
fn authenticated(headers: &HeaderMap, account: &TwilioAccount, path_sid: &str) -> bool {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let Some(credentials) = credentials else {
        return false;
    };
    let Some((user, password)) = credentials.split_once(':') else {
        return false;
    };
    user == account.account_sid && password == account.auth_token && path_sid == user
}

/// Answers a request to `{prefix}/2010-04-01/…` (`prefix` without its leading `/`).
pub(crate) async fn handle(
    sandbox: Sandbox,
    path: TwilioPath<'_>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let TwilioPath::Messages {
        prefix,
        account_sid,
    } = path
    else {
        return TwilioError::new(code::NOT_FOUND, "").response();
    };
    if !authenticated(headers, &sandbox.config.twilio, account_sid) {
        return TwilioError::new(code::AUTHENTICATE, "").response();
    }
    let prefix = prefix.to_owned();
    // Like Twilio, finish a send whose caller stopped waiting: the message may still go
    // out, which is why a timeout's outcome is unknown.
    tokio::spawn(async move { send(&sandbox, &prefix, &body).await })
        .await
        .unwrap_or_else(|_| TwilioError::new(20500, "").response())
}

async fn send(sandbox: &Sandbox, prefix: &str, body: &[u8]) -> Response {
    let received_at_ms = now_ms();
    let (generation, call_id) = {
        let mut recorded = sandbox.recorded();
        (recorded.generation(), recorded.sms.next_call_id())
    };
    let request = Request::from_form(body);
    let log = |status: StatusCode, error_code: Option<u32>, sid: Option<String>| SmsCall {
        error_code,
        sid,
        ..request.call(call_id, prefix, received_at_ms, status.as_u16())
    };
    let validity = match request.check() {
        Ok(validity) => validity,
        Err(error) => {
            let call = log(error.status, Some(error.code), None);
            sandbox.recorded().record_sms(generation, call, None);
            return error.response();
        }
    };
    let phone = request.phone();
    let script = sandbox
        .recorded()
        .sms
        .pop_script(&phone)
        .unwrap_or_default();
    let delay = script
        .delay_ms
        .map_or(sandbox.config.latency, Duration::from_millis);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let to = request.to.clone().unwrap_or_default();
    if let Some(error) = script.refusal(&to) {
        let call = log(error.status, Some(error.code), None);
        sandbox.recorded().record_sms(generation, call, None);
        return with_retry_after(error.response(), script.retry_after);
    }

    let sid = ids::message_sid();
    let account_sid = sandbox.config.twilio.account_sid.clone();
    let created = Created {
        sid: &sid,
        account_sid: &account_sid,
        to: &to,
        from: request
            .messaging_service_sid
            .is_none()
            .then_some(request.from.as_deref())
            .flatten(),
        messaging_service_sid: request.messaging_service_sid.as_deref(),
        body: request.text(),
        created_at_ms: now_ms(),
    };
    let answer = (StatusCode::CREATED, Json(created.resource())).into_response();
    let message = Message {
        phone: phone.clone(),
        channel: Channel::Sms,
        text: request.text().to_owned(),
        received_at_ms,
        call_id,
        sid: Some(sid.clone()),
        from: request
            .messaging_service_sid
            .clone()
            .or_else(|| request.from.clone()),
        ..Message::default()
    };
    let call = log(StatusCode::CREATED, None, Some(sid.clone()));
    let recorded = sandbox
        .recorded()
        .record_sms(generation, call, Some(message));
    if let (true, Some(url)) = (recorded, request.status_callback.clone()) {
        sms_callback::schedule(
            sandbox,
            Accepted {
                sid,
                account_sid,
                from: match &request.messaging_service_sid {
                    Some(_) => SERVICE_SENDER.to_owned(),
                    None => request.from.clone().unwrap_or_default(),
                },
                to,
                phone,
                messaging_service_sid: request.messaging_service_sid.clone(),
                url,
                plan: script.plan(),
                validity,
                generation,
            },
        );
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(path: &str) -> Option<(&str, &str)> {
        match twilio_path(path)? {
            TwilioPath::Messages {
                prefix,
                account_sid,
            } => Some((prefix, account_sid)),
            TwilioPath::Other => None,
        }
    }

    #[test]
    fn the_messages_path_is_found_under_any_prefix() {
        assert_eq!(
            messages("2010-04-01/Accounts/AC1/Messages.json"),
            Some(("", "AC1"))
        );
        assert_eq!(
            messages("twilio/run-7/2010-04-01/Accounts/AC1/Messages.json"),
            Some(("twilio/run-7", "AC1"))
        );
        assert!(messages("2010-04-01/Accounts/AC1/Calls.json").is_none());
        assert!(messages("2010-04-01/Accounts//Messages.json").is_none());
        assert!(messages("2010-04-01/Accounts/AC1/x/Messages.json").is_none());
        assert!(matches!(
            twilio_path("2010-04-01/Accounts/AC1/Calls.json"),
            Some(TwilioPath::Other)
        ));
        assert!(twilio_path("tenant/api/v1/sendTemplateMessage").is_none());
        assert!(twilio_path("x2010-04-01/Accounts/AC1/Messages.json").is_none());
    }

    fn request(pairs: &[(&str, &str)]) -> Request {
        Request::from_form(form::encode(pairs.iter().copied()).as_bytes())
    }

    fn refusal(pairs: &[(&str, &str)]) -> Option<u32> {
        request(pairs).check().err().map(|e| e.code)
    }

    #[test]
    fn each_missing_or_broken_parameter_gets_its_code() {
        let to = ("To", "+447700900123");
        let from = ("From", "+15005550006");
        let body = ("Body", "123456 is your code");
        assert_eq!(refusal(&[to, from, body]), None);
        assert_eq!(refusal(&[from, body]), Some(21604));
        assert_eq!(refusal(&[("To", ""), from, body]), Some(21604));
        assert_eq!(refusal(&[("To", "447700900123"), from, body]), Some(21211));
        assert_eq!(refusal(&[to, body]), Some(21603));
        assert_eq!(refusal(&[to, from]), Some(21602));
        assert_eq!(refusal(&[to, ("MessagingServiceSid", "MG1")]), Some(21619));
        assert_eq!(refusal(&[to, from, ("MediaUrl", "https://x/y.png")]), None);
        let long = "a".repeat(1_601);
        assert_eq!(refusal(&[to, from, ("Body", &long)]), Some(21617));
        for bad in ["0", "36001", "ten", "-5", "1.5"] {
            assert_eq!(
                refusal(&[to, from, body, ("ValidityPeriod", bad)]),
                Some(21624),
                "{bad}"
            );
        }
        assert_eq!(
            request(&[to, from, body, ("ValidityPeriod", "300")]).check(),
            Ok(Some(Duration::from_secs(300)))
        );
    }

    fn basic(credentials: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(credentials));
        headers.insert(header::AUTHORIZATION, value.parse().expect("a header"));
        headers
    }

    #[test]
    fn only_the_accounts_sid_and_token_for_its_own_path_authenticate() {
        let account = TwilioAccount::default();
        let sid = DEFAULT_TWILIO_ACCOUNT_SID;
        let good = basic(&format!("{sid}:sandbox-token"));
        assert!(authenticated(&good, &account, sid));
        assert!(!authenticated(
            &good,
            &account,
            "AC00000000000000000000000000000000"
        ));
        assert!(!authenticated(
            &basic(&format!("{sid}:wrong")),
            &account,
            sid
        ));
        assert!(!authenticated(
            &basic("ACother:sandbox-token"),
            &account,
            sid
        ));
        assert!(!authenticated(&basic(sid), &account, sid));
        assert!(!authenticated(&HeaderMap::new(), &account, sid));
    }
}
