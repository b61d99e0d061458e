//! Twilio's Messages API, as Twilio documents it (twilio.com/docs/messaging/api/message-resource):
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth with the
//! account sid and auth token, a form body `To` (`+` and the E.164 digits), `From` (a
//! number) or `MessagingServiceSid` (`MG…`), `Body` and `StatusCallback`. 201 answers the
//! message (its `sid`); an error answers `{code, message, more_info, status}`. What an
//! answer means for the send is the same [`Verdict`] WATI's answers come to: 2xx with a
//! sid is accepted; 400 (21211 invalid number, 21408 region not permitted, 21610
//! unsubscribed, 21614 not a mobile number, …), 401, 403, 404 and other 4xx are
//! permanent; 429 (20429), 5xx, a timeout or a broken connection are transient. Like the
//! WATI client, it never follows a redirect and reads at most a small answer.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otp_shared::phone::PhoneNumber;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::classify::{Refusal, Trouble, Verdict};
use crate::wati::answer::clip;

/// The most of an answer that is read: a message resource is under 2 KiB.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Who a message is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A number, `+1…`.
    Number(String),
    /// A Messaging Service, `MG…`: Twilio picks the number.
    Service(String),
}

impl Sender {
    /// `TWILIO_FROM`: a Messaging Service sid (`MG` and 32 hex digits) or a number.
    pub fn parse(from: &str) -> Option<Self> {
        let from = from.trim();
        let hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(rest) = from.strip_prefix("MG") {
            return hex(rest).then(|| Sender::Service(from.to_owned()));
        }
        let digits = from.strip_prefix('+').unwrap_or(from);
        (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Sender::Number(format!("+{digits}")))
    }
}

/// How to reach Twilio.
#[derive(Clone, Debug)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`, or a sandbox.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: SecretString,
    pub from: Sender,
    /// The public URL of the api's `/api/webhooks/twilio`; `None` asks for no callbacks.
    pub status_callback_url: Option<String>,
    pub timeout: Duration,
}

/// What came back from one request to Twilio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsAnswer {
    Http {
        status: u16,
        retry_after: Option<Duration>,
        /// The message's `sid` (2xx), or the error's `code` and `message`.
        sid: Option<String>,
        code: Option<u64>,
        message: Option<String>,
    },
    Timeout,
    Connection,
}

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: String,
    auth_header: String,
    from: Sender,
    status_callback_url: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(config: &TwilioConfig) -> Result<Self, reqwest::Error> {
        let http = crate::http_client::client(config.timeout).build()?;
        let credentials = format!(
            "{}:{}",
            config.account_sid,
            config.auth_token.expose_secret()
        );
        Ok(Self {
            http,
            messages_url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                config.base_url, config.account_sid
            ),
            auth_header: format!("Basic {}", STANDARD.encode(credentials)),
            from: config.from.clone(),
            status_callback_url: config.status_callback_url.clone(),
            timeout: config.timeout,
        })
    }

    /// Sends `body` to `to`. Its status callbacks, if asked for, come to the callback URL
    /// with `callback_query` appended (it names the send), waiting at most the configured
    /// timeout or `time_left`.
    pub async fn send(
        &self,
        to: &PhoneNumber,
        body: &str,
        callback_query: &str,
        time_left: Duration,
    ) -> SmsAnswer {
        let form = self.form(to, body, callback_query);
        let sent = self
            .http
            .post(&self.messages_url)
            .header(AUTHORIZATION, &self.auth_header)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .timeout(self.timeout.min(time_left))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return SmsAnswer::Timeout,
            Err(_) => return SmsAnswer::Connection,
        };
        let status = response.status().as_u16();
        let retry_after = crate::http_client::retry_after(&response);
        let body = match crate::http_client::read_at_most(response, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            Err(e) if e.is_timeout() => return SmsAnswer::Timeout,
            Err(_) => None,
        };
        let json = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
        SmsAnswer::Http {
            status,
            retry_after,
            sid: field("sid").and_then(Value::as_str).map(clip),
            code: field("code").and_then(Value::as_u64),
            message: field("message").and_then(Value::as_str).map(clip),
        }
    }
}

impl TwilioClient {
    /// The form body of a send (built apart: the serializer is not `Send`).
    fn form(&self, to: &PhoneNumber, body: &str, callback_query: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", &format!("+{to}"));
        match &self.from {
            Sender::Number(number) => form.append_pair("From", number),
            Sender::Service(sid) => form.append_pair("MessagingServiceSid", sid),
        };
        form.append_pair("Body", body);
        if let Some(url) = &self.status_callback_url {
            form.append_pair("StatusCallback", &format!("{url}?{callback_query}"));
        }
        form.finish()
    }
}

/// The `result` label of a call to Twilio: a small fixed set, for metrics and alerts.
pub fn result_class(answer: &SmsAnswer) -> &'static str {
    match answer {
        SmsAnswer::Timeout => "timeout",
        SmsAnswer::Connection => "connection_error",
        SmsAnswer::Http { status, sid, .. } => match status {
            200..=299 if sid.is_some() => "accepted",
            200..=299 => "unreadable",
            300..=399 => "redirected",
            401 | 403 => "auth_failed",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        },
    }
}

/// What Twilio's answer means for the send.
pub fn classify(answer: &SmsAnswer) -> Verdict {
    let (status, retry_after, sid, code, message) = match answer {
        SmsAnswer::Timeout => return Verdict::transient(Trouble::Timeout, None),
        SmsAnswer::Connection => return Verdict::transient(Trouble::Unreachable, None),
        SmsAnswer::Http {
            status,
            retry_after,
            sid,
            code,
            message,
        } => (*status, *retry_after, sid, code, message),
    };
    // Twilio's code leads its words, so a status can show and a metric can count it.
    let info = || match (code, message) {
        (Some(code), Some(message)) => Some(clip(&format!("{code}: {message}"))),
        (Some(code), None) => Some(code.to_string()),
        (None, message) => message.clone(),
    };
    match status {
        200..=299 if sid.is_some() => Verdict::Accepted,
        // Taken, but what was taken cannot be read: it may or may not go out.
        200..=299 => Verdict::transient(Trouble::Unreadable, None),
        300..=399 => Verdict::permanent(Refusal::Redirected { status }, None),
        401 | 403 => Verdict::permanent(Refusal::AuthFailed, info()),
        429 => Verdict::transient(Trouble::RateLimited, retry_after),
        400..=499 => Verdict::permanent(Refusal::Rejected { status }, info()),
        503 => Verdict::transient(Trouble::Unavailable, retry_after),
        _ => Verdict::transient(Trouble::ServerError { status }, retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, sid: Option<&str>, code: Option<u64>, message: Option<&str>) -> SmsAnswer {
        SmsAnswer::Http {
            status,
            retry_after: None,
            sid: sid.map(str::to_owned),
            code,
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn a_sender_is_a_number_or_a_messaging_service() {
        assert_eq!(
            Sender::parse("+14155552671"),
            Some(Sender::Number("+14155552671".into()))
        );
        assert_eq!(
            Sender::parse("14155552671"),
            Some(Sender::Number("+14155552671".into()))
        );
        let service = format!("MG{}", "a1".repeat(16));
        assert_eq!(
            Sender::parse(&service),
            Some(Sender::Service(service.clone()))
        );
        for bad in ["", "MG123", "+1 415", "sender", "+1234567890123456"] {
            assert_eq!(Sender::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_are_classified_as_twilio_documents_them() {
        let sid = Some("SM0123456789abcdef0123456789abcdef");
        assert_eq!(classify(&http(201, sid, None, None)), Verdict::Accepted);
        assert!(matches!(
            classify(&http(201, None, None, None)),
            Verdict::Transient {
                trouble: Trouble::Unreadable,
                ..
            }
        ));
        for code in [21211, 21408, 21610, 21614] {
            assert_eq!(
                classify(&http(400, None, Some(code), Some("refused"))),
                Verdict::Permanent {
                    refusal: Refusal::Rejected { status: 400 },
                    info: Some(format!("{code}: refused"))
                }
            );
        }
        assert!(matches!(
            classify(&http(401, None, Some(20003), Some("Authenticate"))),
            Verdict::Permanent {
                refusal: Refusal::AuthFailed,
                ..
            }
        ));
        let limited = SmsAnswer::Http {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
            sid: None,
            code: Some(20429),
            message: None,
        };
        assert_eq!(
            classify(&limited),
            Verdict::Transient {
                trouble: Trouble::RateLimited,
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            classify(&http(500, None, None, None)),
            Verdict::Transient {
                trouble: Trouble::ServerError { status: 500 },
                ..
            }
        ));
        assert!(matches!(
            classify(&SmsAnswer::Timeout),
            Verdict::Transient {
                trouble: Trouble::Timeout,
                ..
            }
        ));
    }
}
