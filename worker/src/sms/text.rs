//! The SMS that carries a code: `SMS_TEXT` with `{code}` and `{minutes}` filled in, and,
//! with `SMS_WEBOTP_DOMAIN`, the origin-bound last line `@domain #code` that browsers
//! (the WebOTP API) and phones (iOS and Android autofill) read to offer the code for that
//! site only. The body holds the code: it is never logged.

use otp_shared::config::ConfigError;

/// Longest accepted `SMS_TEXT`: two GSM segments' worth, before the code is filled in.
const MAX_TEXT_CHARS: usize = 300;

/// How SMS bodies are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsText {
    template: String,
    webotp_domain: Option<String>,
}

impl SmsText {
    /// From `SMS_TEXT` (which must hold `{code}`) and `SMS_WEBOTP_DOMAIN` (a host name).
    pub fn new(template: &str, webotp_domain: Option<&str>) -> Result<Self, ConfigError> {
        if !template.contains("{code}") || template.chars().count() > MAX_TEXT_CHARS {
            return Err(ConfigError::Invalid {
                name: "SMS_TEXT",
                problem: "must hold {code} and be at most 300 characters",
            });
        }
        let webotp_domain = match webotp_domain.map(str::trim).filter(|d| !d.is_empty()) {
            Some(domain) if is_host(domain) => Some(domain.to_ascii_lowercase()),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "SMS_WEBOTP_DOMAIN",
                    problem: "must be a host name such as login.example.com (no scheme, port or path)",
                });
            }
            None => None,
        };
        Ok(Self {
            template: template.to_owned(),
            webotp_domain,
        })
    }

    /// The body for `code`, which expires in `minutes` (rounded up).
    pub fn body(&self, code: &str, minutes: u64) -> String {
        let mut body = self
            .template
            .replace("{minutes}", &minutes.to_string())
            .replace("{code}", code);
        if let Some(domain) = &self.webotp_domain {
            // The WebOTP format: the last line, `@` the site's host, a space, `#` the code.
            body.push_str(&format!("\n\n@{domain} #{code}"));
        }
        body
    }
}

/// Letters, digits, hyphens and dots, with at least one dot: a host name, nothing more.
fn is_host(domain: &str) -> bool {
    domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_and_its_minutes_are_filled_in() {
        let text = SmsText::new(
            "{code} is your code. It expires in {minutes} minutes.",
            None,
        )
        .expect("valid");
        assert_eq!(
            text.body("483920", 5),
            "483920 is your code. It expires in 5 minutes."
        );
    }

    #[test]
    fn the_webotp_line_comes_last_and_names_the_site() {
        let text = SmsText::new(
            "{code} is your verification code.",
            Some("Login.Example.com"),
        )
        .expect("valid");
        assert_eq!(
            text.body("483920", 5),
            "483920 is your verification code.\n\n@login.example.com #483920"
        );
    }

    #[test]
    fn a_text_without_the_code_or_a_domain_that_is_not_a_host_is_refused() {
        assert!(SmsText::new("Your code is ready.", None).is_err());
        assert!(SmsText::new(&"x{code}".repeat(60), None).is_err());
        for bad in [
            "https://example.com",
            "example.com:443",
            "example.com/login",
            "localhost",
            "-a.com",
            "a..com",
        ] {
            assert!(SmsText::new("{code}", Some(bad)).is_err(), "{bad}");
        }
        assert!(SmsText::new("{code}", Some(" ")).is_ok(), "blank is none");
    }
}
