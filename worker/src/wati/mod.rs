//! The WATI client: one struct with its endpoint, key, parameter, sending number and
//! timeout set once. v3 sends a batch of recipients in one call, all in one template;
//! v1 sends one code per call. It never follows a redirect (a redirect would carry codes
//! to another host) and never reads more of an answer than a batch of that size can
//! need. It also reads WATI's template list (`listing`).

pub mod answer;
pub mod listing;

use std::time::Duration;

use otp_shared::budget::WatiApiVersion;
use otp_shared::phone::PhoneNumber;
use otp_shared::seal::PlainCode;
use reqwest::header::AUTHORIZATION;
use secrecy::ExposeSecret;
use serde::Serialize;
use uuid::Uuid;

use self::answer::{AnswerBody, BASE_ANSWER_BYTES, BYTES_PER_RECIPIENT, WatiAnswer};
use crate::config::WatiConfig;

/// One recipient of a call.
#[derive(Debug)]
pub struct Recipient<'a> {
    /// Sent as v3's `local_message_id`, so WATI's answer and receipts name the send.
    pub request_id: Uuid,
    pub phone: &'a PhoneNumber,
    pub code: &'a PlainCode,
}

#[derive(Serialize)]
struct Param<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct V3Recipient<'a> {
    phone_number: &'a str,
    local_message_id: String,
    custom_params: [Param<'a>; 1],
}

#[derive(Serialize)]
struct V3Body<'a> {
    template_name: &'a str,
    broadcast_name: String,
    channel_number: Option<&'a str>,
    recipients: Vec<V3Recipient<'a>>,
}

#[derive(Serialize)]
struct V1Body<'a> {
    template_name: &'a str,
    broadcast_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_number: Option<&'a str>,
    parameters: [Param<'a>; 1],
}

#[derive(Clone)]
pub struct WatiClient {
    http: reqwest::Client,
    version: WatiApiVersion,
    base_url: String,
    send_url: String,
    auth_header: String,
    /// The template parameter that carries the code.
    param: String,
    /// The numbers whose template lists the check reads.
    channel_numbers: Vec<Option<String>>,
    timeout: Duration,
}

impl std::fmt::Debug for WatiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatiClient")
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

impl WatiClient {
    pub fn new(config: &WatiConfig) -> Result<Self, reqwest::Error> {
        let http = crate::http_client::client(config.timeout)
            .pool_max_idle_per_host(256)
            .build()?;
        let path = match config.api_version {
            WatiApiVersion::V1 => "/api/v1/sendTemplateMessage",
            WatiApiVersion::V3 => "/api/ext/v3/messageTemplates/send",
        };
        Ok(Self {
            http,
            version: config.api_version,
            base_url: config.base_url.clone(),
            send_url: format!("{}{path}", config.base_url),
            auth_header: format!("Bearer {}", config.api_key.expose_secret()),
            param: config.templates.param().to_owned(),
            channel_numbers: config.channel_numbers.clone(),
            timeout: config.timeout,
        })
    }

    /// The longest a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `template` to `recipients` in one call from the number `channel_number`
    /// (`None`: WATI's default channel), waiting at most the configured timeout or
    /// `time_left`, whichever is shorter. In v1 a call carries exactly one recipient;
    /// the batcher never gives it more.
    pub async fn send(
        &self,
        template: &str,
        recipients: &[Recipient<'_>],
        channel_number: Option<&str>,
        time_left: Duration,
    ) -> WatiAnswer {
        let request = match (self.version, recipients) {
            (WatiApiVersion::V1, [one]) => self.v1_request(template, one, channel_number),
            (WatiApiVersion::V1, _) => {
                debug_assert!(false, "a v1 call carries exactly one recipient");
                return WatiAnswer::Connection;
            }
            (WatiApiVersion::V3, _) => self.v3_request(template, recipients, channel_number),
        };
        let limit = BASE_ANSWER_BYTES + BYTES_PER_RECIPIENT * recipients.len();
        let response = request
            .header(AUTHORIZATION, &self.auth_header)
            .timeout(self.timeout.min(time_left))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return WatiAnswer::Timeout,
            Err(_) => return WatiAnswer::Connection,
        };
        let status = response.status().as_u16();
        let retry_after = crate::http_client::retry_after(&response);
        let body = match crate::http_client::read_at_most(response, limit).await {
            Ok(bytes) => bytes.as_deref().and_then(AnswerBody::parse),
            Err(e) if e.is_timeout() => return WatiAnswer::Timeout,
            Err(_) => None,
        };
        WatiAnswer::Http {
            status,
            retry_after,
            body,
        }
    }

    fn v1_request(
        &self,
        template: &str,
        recipient: &Recipient<'_>,
        channel_number: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let body = V1Body {
            template_name: template,
            broadcast_name: format!("otp_{}", recipient.request_id.simple()),
            channel_number,
            parameters: [Param {
                name: &self.param,
                value: recipient.code.expose(),
            }],
        };
        self.http
            .post(&self.send_url)
            .query(&[("whatsappNumber", recipient.phone.as_str())])
            .json(&body)
    }

    fn v3_request(
        &self,
        template: &str,
        recipients: &[Recipient<'_>],
        channel_number: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let body = V3Body {
            template_name: template,
            // Unique per call: WATI lists each call as a broadcast under this name.
            broadcast_name: format!("otp_{}", Uuid::new_v4().simple()),
            channel_number,
            recipients: recipients
                .iter()
                .map(|r| V3Recipient {
                    phone_number: r.phone.as_str(),
                    local_message_id: r.request_id.to_string(),
                    custom_params: [Param {
                        name: &self.param,
                        value: r.code.expose(),
                    }],
                })
                .collect(),
        };
        self.http.post(&self.send_url).json(&body)
    }
}
