//! The WATI client: one struct with its base URL, key, template and timeout set once.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::classify::WatiReply;
use crate::config::WatiConfig;

/// The part of WATI's answer the worker reads.
#[derive(Deserialize)]
struct WatiBody {
    result: Option<bool>,
    info: Option<String>,
}

#[derive(Clone)]
pub struct WatiClient {
    http: reqwest::Client,
    send_url: String,
    auth_header: String,
    template_name: String,
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
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            http,
            send_url: format!("{}/api/v1/sendTemplateMessage", config.base_url),
            auth_header: format!("Bearer {}", config.api_key.expose_secret()),
            template_name: config.template_name.clone(),
            timeout: config.timeout,
        })
    }

    /// Sends the template with `code` to `phone`, waiting at most the configured
    /// timeout or `time_left`, whichever is shorter.
    pub async fn send(
        &self,
        phone: &str,
        code: &str,
        broadcast_name: &str,
        time_left: Duration,
    ) -> WatiReply {
        let body = json!({
            "template_name": self.template_name,
            "broadcast_name": broadcast_name,
            "parameters": [{"name": "otp", "value": code}],
        });
        let response = self
            .http
            .post(&self.send_url)
            .query(&[("whatsappNumber", phone)])
            .header(AUTHORIZATION, &self.auth_header)
            .json(&body)
            .timeout(self.timeout.min(time_left))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return WatiReply::Timeout,
            Err(_) => return WatiReply::Connection,
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let parsed = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice::<WatiBody>(&bytes).ok(),
            Err(e) if e.is_timeout() => return WatiReply::Timeout,
            Err(_) => None,
        };
        let (result, info) = parsed.map_or((None, None), |b| (b.result, b.info));
        WatiReply::Http {
            status,
            retry_after,
            result,
            info,
        }
    }
}
