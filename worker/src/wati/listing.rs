//! Reading the tenant's template list, as WATI documents it (docs.wati.io, "Get message
//! templates" and the v1 "Get Message Templates" reference):
//!
//! - v3 `GET /api/ext/v3/messageTemplates?page_number=N&page_size=100` (both required,
//!   at most 100 a page) answers `{templates, page_number, page_size, total}`; each
//!   template has `name`, `category`, `status`, `language_option {key, value, text}`
//!   and `custom_params [{name, value}]`.
//! - v1 `GET /{tenant}/api/v1/getMessageTemplates?pageNumber=N&pageSize=100` answers
//!   `{messageTemplates}`; each has `elementName`, `category`, `status`, `language
//!   {key, value, text}` and `customParams [{paramName, paramValue}]` (these v1 field
//!   names come from public integrations; WATI's page did not show them).
//!
//! Both are read leniently (either spelling of each field), a page at a time until
//! `total` is reached (or, without one, a page comes back short), for the channel codes
//! go out from (v3 `channel`, v1 `channelPhoneNumber`) when `WATI_CHANNEL_NUMBER` names
//! one. An authentication template listed without parameters has them read from its
//! body's `{{…}}` placeholders (public integrations do the same). 401, 403 (the key
//! lacks the template-read scope) and 5xx say what to do about them.

use std::time::Duration;

use otp_shared::budget::WatiApiVersion;
use reqwest::header::AUTHORIZATION;
use serde_json::Value;

use super::WatiClient;
use super::answer::clip;

/// Templates asked for per page: WATI's most.
const PAGE_SIZE: usize = 100;
/// Pages read at most (10,000 templates): a tenant has tens.
const MAX_PAGES: usize = 100;
/// The most of one page's answer that is read.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// The longest a page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Template names are Meta's, at most 512 characters; they are compared whole.
const MAX_NAME_CHARS: usize = 512;

/// One template as WATI lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedTemplate {
    pub name: String,
    /// The locale, e.g. `en_US` (the `value` of WATI's language object).
    pub language: Option<String>,
    /// `AUTHENTICATION`, `UTILITY`, `MARKETING`.
    pub category: Option<String>,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, …
    pub status: Option<String>,
    /// The names of its parameters, as a send must give them.
    pub params: Vec<String>,
}

/// Why the list could not be read, each with what the operator can do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("WATI refused the API key (HTTP 401): check WATI_API_KEY")]
    Unauthorized,
    #[error(
        "WATI would not list the templates (HTTP 403): give the key the template-read scope ({scope}), or set WATI_PREFLIGHT=off"
    )]
    Forbidden { scope: &'static str },
    #[error(
        "WATI has no template list at {url} (HTTP 404): check WATI_BASE_URL (v1 needs the tenant id in it, v3 none) and WATI_API_VERSION"
    )]
    NotFound { url: String },
    #[error(
        "WATI_BASE_URL redirects (HTTP {status}); the worker never follows a redirect: give the address it redirects to"
    )]
    Redirected { status: u16 },
    #[error("WATI refused the template list request (HTTP {status}{detail})")]
    Rejected { status: u16, detail: String },
    #[error("WATI could not list the templates now (HTTP {status})")]
    Unavailable { status: u16 },
    #[error("WATI did not answer the template list within {PAGE_TIMEOUT:?}")]
    Timeout,
    #[error("WATI could not be reached at {base_url}")]
    Unreachable { base_url: String },
    #[error("WATI's template list could not be read (not the JSON WATI documents)")]
    Unreadable,
}

impl ListError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ListError::Unavailable { .. } | ListError::Timeout | ListError::Unreachable { .. }
        )
    }
}

impl WatiClient {
    /// The numbers codes go out from, whose template lists the check reads (`None`:
    /// WATI's default channel).
    pub fn channel_numbers(&self) -> &[Option<String>] {
        &self.channel_numbers
    }

    /// Every template of the sending number `channel` (`None`: the default channel).
    pub async fn list_templates(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<ListedTemplate>, ListError> {
        let mut all = Vec::new();
        let mut listed = 0;
        for page in 1..=MAX_PAGES {
            let body = self.list_page(page, channel).await?;
            let page = read_page(self.version, &body).ok_or(ListError::Unreadable)?;
            listed += page.listed;
            all.extend(page.templates);
            let done = match page.total {
                Some(total) => listed >= total || page.listed == 0,
                None => page.listed < PAGE_SIZE,
            };
            if done {
                break;
            }
        }
        Ok(all)
    }

    fn list_url(&self) -> String {
        match self.version {
            WatiApiVersion::V3 => format!("{}/api/ext/v3/messageTemplates", self.base_url),
            WatiApiVersion::V1 => format!("{}/api/v1/getMessageTemplates", self.base_url),
        }
    }

    async fn list_page(&self, page: usize, channel: Option<&str>) -> Result<Value, ListError> {
        let (number, size) = match self.version {
            WatiApiVersion::V3 => ("page_number", "page_size"),
            WatiApiVersion::V1 => ("pageNumber", "pageSize"),
        };
        let url = self.list_url();
        let channel = channel.map(|number| match self.version {
            WatiApiVersion::V3 => ("channel", number),
            WatiApiVersion::V1 => ("channelPhoneNumber", number),
        });
        let response = self
            .http
            .get(&url)
            .query(&[(number, page), (size, PAGE_SIZE)])
            .query(&channel.into_iter().collect::<Vec<_>>())
            .header(AUTHORIZATION, &self.auth_header)
            .timeout(PAGE_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ListError::Timeout
                } else {
                    ListError::Unreachable {
                        base_url: self.base_url.clone(),
                    }
                }
            })?;
        let status = response.status().as_u16();
        let body = crate::http_client::read_at_most(response, MAX_PAGE_BYTES)
            .await
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        match status {
            200..=299 => body.ok_or(ListError::Unreadable),
            300..=399 => Err(ListError::Redirected { status }),
            401 => Err(ListError::Unauthorized),
            403 => Err(ListError::Forbidden {
                scope: match self.version {
                    WatiApiVersion::V3 => "messagetemplatev3:read",
                    WatiApiVersion::V1 => "messagetemplate:read",
                },
            }),
            404 => Err(ListError::NotFound { url }),
            429 | 500..=599 => Err(ListError::Unavailable { status }),
            _ => Err(ListError::Rejected {
                status,
                detail: body
                    .as_ref()
                    .and_then(|b| b.get("message").and_then(Value::as_str))
                    .map(|m| format!(": {}", clip(m)))
                    .unwrap_or_default(),
            }),
        }
    }
}

/// One page of the list.
struct Page {
    templates: Vec<ListedTemplate>,
    /// Entries on the page, read or not (one without a name is skipped).
    listed: usize,
    /// How many there are in all, where WATI says.
    total: Option<usize>,
}

/// A page of the list; `None` when the body is not a template list.
fn read_page(version: WatiApiVersion, body: &Value) -> Option<Page> {
    let list_field = match version {
        WatiApiVersion::V3 => "templates",
        WatiApiVersion::V1 => "messageTemplates",
    };
    let entries = body.get(list_field)?.as_array()?;
    let total = body
        .get("total")
        .or_else(|| body.get("link").and_then(|l| l.get("total")))
        .and_then(Value::as_u64)
        .map(|t| t as usize);
    Some(Page {
        templates: entries.iter().filter_map(template).collect(),
        listed: entries.len(),
        total,
    })
}

/// The `{{…}}` placeholders of a template's text, in order, each once.
fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = clip(after[..close].trim());
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
        rest = &after[close + 2..];
    }
    names
}

/// One entry, in either API's spelling; `None` without a name.
fn template(entry: &Value) -> Option<ListedTemplate> {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(clip);
    let name = ["name", "elementName"]
        .iter()
        .find_map(|field| entry.get(*field).and_then(Value::as_str))
        .map(|name| name.chars().take(MAX_NAME_CHARS).collect::<String>())?;
    let language =
        ["language_option", "language"]
            .iter()
            .find_map(|field| match entry.get(*field) {
                Some(Value::String(locale)) => Some(clip(locale)),
                Some(object) => text(object.get("value")),
                None => None,
            });
    let mut params: Vec<String> = ["custom_params", "customParams"]
        .iter()
        .filter_map(|field| entry.get(*field).and_then(Value::as_array))
        .flatten()
        .filter_map(|param| text(param.get("name")).or_else(|| text(param.get("paramName"))))
        .collect();
    let category = text(entry.get("category"));
    if params.is_empty() && category.as_deref() == Some("AUTHENTICATION") {
        // Meta writes an authentication body itself; WATI may list its parameter only
        // as the body's placeholder.
        params = [
            "body_original",
            "bodyOriginal",
            "body",
            "hsm_original",
            "hsm",
        ]
        .iter()
        .find_map(|field| entry.get(*field).and_then(Value::as_str))
        .map(placeholders)
        .unwrap_or_default();
    }
    Some(ListedTemplate {
        name,
        language,
        category,
        status: text(entry.get("status")),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v3_page_reads_as_wati_documents_it() {
        // The example of docs.wati.io's "Get message templates", plus an authentication
        // template.
        let body = json!({
            "templates": [
                {"id": "template_123", "name": "Welcome Message", "category": "MARKETING",
                 "sub_category": "STANDARD", "custom_params": [{"name": "name", "value": "customer_name"}],
                 "status": "APPROVED",
                 "language_option": {"key": "English (US)", "value": "en_US", "text": "English (US)"}},
                {"name": "login_otp", "category": "AUTHENTICATION", "status": "PAUSED",
                 "custom_params": [{"name": "1", "value": "123456"}],
                 "language_option": {"key": "Portuguese (BR)", "value": "pt_BR", "text": "Portuguese (BR)"}},
                {"category": "UTILITY"}
            ],
            "page_number": 1, "page_size": 100, "total": 3
        });
        let page = read_page(WatiApiVersion::V3, &body).expect("a page");
        assert_eq!((page.total, page.listed), (Some(3), 3));
        assert_eq!(
            page.templates.len(),
            2,
            "an entry without a name is skipped"
        );
        assert_eq!(
            page.templates[1],
            ListedTemplate {
                name: "login_otp".into(),
                language: Some("pt_BR".into()),
                category: Some("AUTHENTICATION".into()),
                status: Some("PAUSED".into()),
                params: vec!["1".into()],
            }
        );
    }

    #[test]
    fn a_v1_page_reads_with_its_own_field_names() {
        let body = json!({
            "result": "success",
            "messageTemplates": [
                {"id": "1", "elementName": "login_otp", "category": "AUTHENTICATION",
                 "status": "APPROVED", "language": {"key": "English", "value": "en", "text": "English"},
                 "customParams": [{"paramName": "1", "paramValue": "123456"}]}
            ],
            "link": {"prevPage": null, "nextPage": null, "total": 1}
        });
        let page = read_page(WatiApiVersion::V1, &body).expect("a page");
        assert_eq!(page.total, Some(1));
        assert_eq!(page.templates[0].name, "login_otp");
        assert_eq!(page.templates[0].language.as_deref(), Some("en"));
        assert_eq!(page.templates[0].params, ["1"]);
    }

    #[test]
    fn an_authentication_template_listed_without_parameters_has_its_bodys() {
        let body = json!({"templates": [
            {"name": "login_otp", "category": "AUTHENTICATION", "status": "APPROVED",
             "custom_params": [], "body_original": "*{{1}}* is your verification code."},
            {"name": "promo", "category": "MARKETING", "status": "APPROVED",
             "custom_params": [], "body": "Hello {{name}}"},
        ], "total": 2});
        let page = read_page(WatiApiVersion::V3, &body).expect("a page");
        assert_eq!(page.templates[0].params, ["1"]);
        assert!(
            page.templates[1].params.is_empty(),
            "only for authentication"
        );
        assert_eq!(
            placeholders("{{ 1 }} and {{2}}, {{1}}, {{broken"),
            ["1", "2"]
        );
    }

    #[test]
    fn a_long_name_is_kept_whole() {
        let name = "t".repeat(400);
        let body = json!({"templates": [{"name": name}], "total": 1});
        let page = read_page(WatiApiVersion::V3, &body).expect("a page");
        assert_eq!(page.templates[0].name, name);
    }

    #[test]
    fn a_body_without_the_list_is_not_a_page() {
        assert!(read_page(WatiApiVersion::V3, &json!({"messageTemplates": []})).is_none());
        assert!(read_page(WatiApiVersion::V1, &json!({"templates": []})).is_none());
        assert!(read_page(WatiApiVersion::V3, &json!({"templates": {}})).is_none());
    }

    #[test]
    fn only_outages_are_worth_waiting_for() {
        assert!(ListError::Unavailable { status: 503 }.is_transient());
        assert!(ListError::Timeout.is_transient());
        assert!(!ListError::Unauthorized.is_transient());
        assert!(!ListError::Forbidden { scope: "x" }.is_transient());
        assert!(!ListError::Unreadable.is_transient());
    }
}
