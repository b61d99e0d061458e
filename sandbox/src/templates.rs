//! WATI's template registry, as the sandbox keeps it: the templates a tenant has, each
//! with its name, language, category, status and parameters, how WATI lists them, and
//! the checks a send makes against them. Modelled on WATI's and Meta's documentation,
//! not on what our worker sends:
//!
//! - The lists: docs.wati.io "Get message templates" (v3 `GET
//!   /api/ext/v3/messageTemplates`, `page_number` and `page_size` required, at most 100
//!   a page, answering `{templates, page_number, page_size, total}`; each template with
//!   `name`, `category`, `status`, `language_option {key, value, text}`,
//!   `custom_params [{name, value}]`; 401 without a body) and the v1 "Get Message
//!   Templates" (`pageSize`, `pageNumber`; entries with `elementName`, `language {key,
//!   value, text}`, `customParams [{paramName, paramValue}]`, the field names public
//!   integrations read).
//! - Authentication templates (Meta's template guidelines): the body is fixed,
//!   `{{1}} is your verification code.`, with an optional security line and an expiry
//!   footer, and a "Copy code" button filled from the same value.
//! - A send's parameters (docs.wati.io payload guide: "these are WATI parameter names";
//!   public reports of WATI's answer to a wrong name: "Check your template, it cannot
//!   have typos or blank text"), and Meta's 132000 "Number of parameters does not match
//!   the expected number of params" for a message that goes out without them.
//!
//! - Channels: a tenant with several numbers has templates per number; the lists take
//!   the number (v3 `channel`, v1 `channelPhoneNumber`) and a send its `channel_number`.
//!
//! Not confirmed by WATI's documentation, and chosen here: the texts for an unknown or
//! unapproved template (WATI documents only that "a 200 can report a failed request"),
//! that a wrong parameter name is refused per recipient while a message without any
//! parameter is taken and then failed by receipt (the issue asked for that receipt; Meta's
//! guidance calls 132000 usually a synchronous rejection), and the status strings other
//! than `APPROVED`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The text WATI is reported to answer for a parameter it cannot match, or a blank one.
pub const CHECK_YOUR_TEMPLATE: &str = "Check your template, it cannot have typos or blank text";
/// Meta's error for a message whose parameters do not match its template.
pub const PARAM_COUNT_MISMATCH_CODE: &str = "132000";
pub const PARAM_COUNT_MISMATCH_DETAIL: &str =
    "(#132000) Number of parameters does not match the expected number of params";

/// One template of the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub name: String,
    /// The locale, e.g. `en_US`, `pt_BR`.
    pub language: String,
    /// `AUTHENTICATION`, `UTILITY` or `MARKETING`.
    pub category: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`.
    pub status: String,
    /// Its parameters' names, as a send must give them (`1` for an authentication one).
    pub params: Vec<String>,
    /// An authentication template's "For your security, do not share this code."
    #[serde(default = "yes")]
    pub security_line: bool,
    /// An authentication template's footer, "This code expires in N minutes."
    #[serde(default)]
    pub expiry_minutes: Option<u32>,
    /// The sending number it belongs to; `None` for the tenant's default channel.
    #[serde(default)]
    pub channel: Option<String>,
}

fn yes() -> bool {
    true
}

impl Template {
    /// An approved authentication template with the one parameter `1`, as Meta makes them.
    pub fn authentication(name: &str, language: &str) -> Self {
        Self {
            name: name.into(),
            language: language.into(),
            category: "AUTHENTICATION".into(),
            status: "APPROVED".into(),
            params: vec!["1".into()],
            security_line: true,
            expiry_minutes: Some(5),
            channel: None,
        }
    }

    pub fn approved(&self) -> bool {
        self.status == "APPROVED"
    }

    fn is_authentication(&self) -> bool {
        self.category == "AUTHENTICATION"
    }

    /// The message a phone shows for `values` (the send's parameters, by name).
    pub fn render(&self, value_of: impl Fn(&str) -> Option<String>) -> Rendered {
        let first = self
            .params
            .first()
            .and_then(|p| value_of(p))
            .unwrap_or_default();
        if self.is_authentication() {
            let mut text = format!("{first} is your verification code.");
            if self.security_line {
                text.push_str(" For your security, do not share this code.");
            }
            Rendered {
                text,
                footer: self
                    .expiry_minutes
                    .map(|m| format!("This code expires in {m} minutes.")),
                button: Some("Copy code".into()),
            }
        } else {
            let values: Vec<String> = self.params.iter().filter_map(|p| value_of(p)).collect();
            Rendered {
                text: format!("{}: {}", self.name, values.join(" ")),
                footer: None,
                button: None,
            }
        }
    }

    fn language_object(&self) -> Value {
        json!({"key": self.language, "value": self.language, "text": self.language})
    }

    /// As v3 lists it.
    pub fn v3_entry(&self, index: usize) -> Value {
        let body = self.render(|p| Some(format!("{{{{{p}}}}}"))).text;
        json!({
            "id": format!("sandbox-template-{index}"),
            "name": self.name,
            "category": self.category,
            "sub_category": null,
            "hsm": body,
            "hsm_original": body,
            "custom_params": self.params.iter().map(|p| json!({"name": p, "value": "123456"})).collect::<Vec<_>>(),
            "status": self.status,
            "language_option": self.language_object(),
            "type": "TEXT",
            "body": body,
            "body_original": body,
            "footer": self.render(|_| None).footer,
            "buttons": if self.is_authentication() { json!([{"type": "OTP", "parameter": {"text": "Copy code"}}]) } else { json!([]) },
            "expires_in": self.expiry_minutes.map_or(0, |m| m * 60),
            "include_expiry_time": self.expiry_minutes.is_some(),
            "add_security_recommendation": self.security_line,
            "quality": "GREEN",
            "creation_method": "HUMAN",
        })
    }

    /// As v1 lists it.
    pub fn v1_entry(&self, index: usize) -> Value {
        let body = self.render(|p| Some(format!("{{{{{p}}}}}"))).text;
        json!({
            "id": format!("sandbox-template-{index}"),
            "elementName": self.name,
            "category": self.category,
            "status": self.status,
            "language": self.language_object(),
            "type": "template",
            "body": body,
            "bodyOriginal": body,
            "customParams": self.params.iter().map(|p| json!({"paramName": p, "paramValue": "123456"})).collect::<Vec<_>>(),
        })
    }
}

/// What a phone shows for a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    pub text: String,
    pub footer: Option<String>,
    pub button: Option<String>,
}

/// The sandbox's default registry: one approved authentication template, `login_otp`.
pub fn defaults() -> Vec<Template> {
    vec![Template::authentication("login_otp", "en_US")]
}

/// Reads `SANDBOX_TEMPLATES`: `name:language:category:status:param|param[:channel]`,
/// comma-separated (e.g. `login_otp:en_US:AUTHENTICATION:APPROVED:1,promo:en:MARKETING:APPROVED:`).
pub fn parse(list: &str) -> Result<Vec<Template>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let fields: Vec<&str> = entry.split(':').collect();
            let (name, language, category, status, params, channel) = match fields[..] {
                [name, language, category, status, params] => {
                    (name, language, category, status, params, None)
                }
                [name, language, category, status, params, channel] => {
                    (name, language, category, status, params, Some(channel.to_owned()))
                }
                _ => {
                    return Err(format!(
                        "SANDBOX_TEMPLATES entry {entry:?} is not name:language:category:status:params[:channel]"
                    ));
                }
            };
            Ok(Template {
                category: category.to_ascii_uppercase(),
                status: status.to_ascii_uppercase(),
                params: params
                    .split('|')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                channel,
                ..Template::authentication(name, language)
            })
        })
        .collect()
}

/// What a send's parameters come to against its template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamCheck {
    /// Every parameter given by name, none blank: the code is the first's value.
    Filled { code: String },
    /// Names that are not the template's, or a blank value: WATI refuses the recipient.
    Mismatched,
    /// No parameters at all: WATI takes it, and Meta fails the message (132000).
    Missing,
}

/// A send's parameters, `(name, value)`; a value that is not a text is `None`.
pub type Params = [(String, Option<String>)];

/// The value a send gives the parameter `name`.
pub fn value_of(params: &Params, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.clone())
}

impl Template {
    /// Checks a send's `(name, value)` parameters.
    pub fn check_params(&self, given: &Params) -> ParamCheck {
        if given.is_empty() && !self.params.is_empty() {
            return ParamCheck::Missing;
        }
        let value_of = |name: &str| value_of(given, name);
        let all_filled = self
            .params
            .iter()
            .all(|p| value_of(p).is_some_and(|v| !v.trim().is_empty()));
        let all_known = given.iter().all(|(n, _)| self.params.contains(n));
        if !all_filled || !all_known {
            return ParamCheck::Mismatched;
        }
        ParamCheck::Filled {
            code: self
                .params
                .first()
                .and_then(|p| value_of(p))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn an_authentication_template_takes_its_one_parameter_by_name() {
        let t = Template::authentication("login_otp", "en_US");
        assert_eq!(
            t.check_params(&given(&[("1", "123456")])),
            ParamCheck::Filled {
                code: "123456".into()
            }
        );
        assert_eq!(
            t.check_params(&given(&[("otp", "123456")])),
            ParamCheck::Mismatched
        );
        assert_eq!(
            t.check_params(&given(&[("1", "123456"), ("2", "x")])),
            ParamCheck::Mismatched
        );
        assert_eq!(
            t.check_params(&given(&[("1", " ")])),
            ParamCheck::Mismatched
        );
        assert_eq!(t.check_params(&[]), ParamCheck::Missing);
    }

    #[test]
    fn the_authentication_body_is_metas() {
        let t = Template::authentication("login_otp", "en_US");
        assert_eq!(
            t.render(|_| Some("483920".into())),
            Rendered {
                text:
                    "483920 is your verification code. For your security, do not share this code."
                        .into(),
                footer: Some("This code expires in 5 minutes.".into()),
                button: Some("Copy code".into()),
            }
        );
    }

    #[test]
    fn the_setting_reads_every_field() {
        let parsed =
            parse("login_otp:en_US:AUTHENTICATION:APPROVED:1, promo:pt_BR:marketing:paused:a|b")
                .expect("valid");
        assert_eq!(parsed[0], Template::authentication("login_otp", "en_US"));
        assert_eq!(parsed[1].category, "MARKETING");
        assert_eq!(parsed[1].status, "PAUSED");
        assert_eq!(parsed[1].params, ["a", "b"]);
        assert!(parse("login_otp:en").is_err());
    }

    #[test]
    fn both_lists_name_the_fields_wati_documents() {
        let t = Template::authentication("login_otp", "pt_BR");
        let v3 = t.v3_entry(0);
        assert_eq!(v3["name"], "login_otp");
        assert_eq!(v3["language_option"]["value"], "pt_BR");
        assert_eq!(v3["custom_params"][0]["name"], "1");
        let v1 = t.v1_entry(0);
        assert_eq!(v1["elementName"], "login_otp");
        assert_eq!(v1["language"]["value"], "pt_BR");
        assert_eq!(v1["customParams"][0]["paramName"], "1");
    }
}
