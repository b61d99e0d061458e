//! The SMS settings both processes read (`SMS_PROVIDER` and what the api needs of
//! Twilio), and the one rule both apply before a code goes by SMS: the phone's country
//! is in `SMS_ALLOWED_COUNTRY_CODES` (SMS is where pumping costs money, so no country is
//! allowed by default).

use secrecy::SecretString;

use crate::config::{ConfigError, real_secret};
use crate::phone::{CallingCode, PhoneNumber, calling_codes};

/// SMS settings shared by the api and the worker.
#[derive(clap::Args, Clone, Debug)]
pub struct SmsArgs {
    /// `twilio`: codes WhatsApp cannot deliver go by SMS, and apps may ask for SMS;
    /// empty: no SMS.
    #[arg(long, env = "SMS_PROVIDER", default_value = "")]
    pub sms_provider: String,
    /// Twilio's auth token: basic auth of the Messages API (worker), and the key of
    /// the status callbacks' signatures (api).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// The public URL of the api's `/api/webhooks/twilio` (https; http only to this
    /// machine or with DEV_MODE): sent to Twilio as `StatusCallback`, and the URL the
    /// callbacks' signatures are made over.
    #[arg(long, env = "TWILIO_STATUS_CALLBACK_URL")]
    pub twilio_status_callback_url: Option<String>,
    /// Calling codes SMS may go to, comma-separated; empty: none.
    #[arg(long, env = "SMS_ALLOWED_COUNTRY_CODES", default_value = "")]
    pub sms_allowed_country_codes: String,
    /// SMS over all phones and replicas per minute (0: no limit).
    #[arg(long, env = "SMS_SENDS_PER_MINUTE", default_value_t = 60)]
    pub sms_sends_per_minute: u32,
}

/// SMS, when it is on.
#[derive(Clone, Debug)]
pub struct SmsSettings {
    countries: Vec<CallingCode>,
    /// `SMS_SENDS_PER_MINUTE` (0: no limit).
    pub sends_per_minute: u32,
    pub auth_token: SecretString,
    /// Where Twilio posts status callbacks; none asks for none.
    pub status_callback_url: Option<String>,
}

impl SmsSettings {
    /// Whether a code may go to `phone` by SMS.
    pub fn allows(&self, phone: &PhoneNumber) -> bool {
        self.countries.iter().any(|code| code.holds(phone))
    }

    /// The allowed calling code `phone` is in: a metric's `country` label.
    pub fn country_of(&self, phone: &PhoneNumber) -> Option<&str> {
        self.countries
            .iter()
            .find(|code| code.holds(phone))
            .map(CallingCode::as_str)
    }
}

impl SmsArgs {
    /// `None` when SMS is off.
    pub fn validate(self, dev_mode: bool) -> Result<Option<SmsSettings>, ConfigError> {
        match self.sms_provider.trim() {
            "" => return Ok(None),
            "twilio" => {}
            _ => {
                return Err(ConfigError::Invalid {
                    name: "SMS_PROVIDER",
                    problem: "must be twilio, or empty for no SMS",
                });
            }
        }
        let token = self
            .twilio_auth_token
            .filter(|t| !t.trim().is_empty())
            .ok_or(ConfigError::Missing("TWILIO_AUTH_TOKEN"))?;
        let status_callback_url = match self
            .twilio_status_callback_url
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
        {
            Some(url) if callback_url_is_usable(&url, dev_mode) => Some(url),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "TWILIO_STATUS_CALLBACK_URL",
                    problem: "must be the https:// URL of /api/webhooks/twilio, without a query (http:// only with DEV_MODE)",
                });
            }
            None => None,
        };
        let countries =
            calling_codes(&self.sms_allowed_country_codes).map_err(|_| ConfigError::Invalid {
                name: "SMS_ALLOWED_COUNTRY_CODES",
                problem: "must be calling codes separated by commas, such as 91,44",
            })?;
        Ok(Some(SmsSettings {
            countries,
            sends_per_minute: self.sms_sends_per_minute,
            auth_token: real_secret("TWILIO_AUTH_TOKEN", SecretString::from(token), dev_mode)?,
            status_callback_url,
        }))
    }
}

/// An absolute https URL without a query or fragment: the worker appends its own query
/// naming the send.
fn callback_url_is_usable(url: &str, dev_mode: bool) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or_default();
    crate::config::is_private_url_usable(url, dev_mode)
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !url.contains(['?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        sms: SmsArgs,
    }

    fn settings(args: &[&str], dev_mode: bool) -> Result<Option<SmsSettings>, ConfigError> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
            .expect("parses")
            .sms
            .validate(dev_mode)
    }

    fn phone(digits: &str) -> PhoneNumber {
        PhoneNumber::from_e164_digits(digits).expect("phone")
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn sms_is_off_unless_a_provider_is_named() {
        assert!(settings(&[], false).expect("valid").is_none());
        assert_eq!(
            settings(&["--sms-provider", "vonage"], false).err(),
            Some(ConfigError::Invalid {
                name: "SMS_PROVIDER",
                problem: "must be twilio, or empty for no SMS",
            })
        );
        assert_eq!(
            settings(&["--sms-provider", "twilio"], false).err(),
            Some(ConfigError::Missing("TWILIO_AUTH_TOKEN"))
        );
    }

    #[test]
    fn no_country_is_allowed_by_default_and_listed_ones_are() {
        let none = settings(
            &["--sms-provider", "twilio", "--twilio-auth-token", TOKEN],
            false,
        )
        .expect("valid")
        .expect("on");
        assert!(!none.allows(&phone("447700900123")));
        let some = settings(
            &[
                "--sms-provider",
                "twilio",
                "--twilio-auth-token",
                TOKEN,
                "--sms-allowed-country-codes",
                "44, +1",
            ],
            false,
        )
        .expect("valid")
        .expect("on");
        assert!(some.allows(&phone("447700900123")));
        assert!(some.allows(&phone("14155552671")));
        assert!(!some.allows(&phone("919876543210")));
        assert_eq!(some.country_of(&phone("14155552671")), Some("1"));
        assert_eq!(some.sends_per_minute, 60);
    }

    #[test]
    fn the_callback_url_is_https_without_a_query_outside_development() {
        let with = |url: &str, dev: bool| {
            settings(
                &[
                    "--sms-provider",
                    "twilio",
                    "--twilio-auth-token",
                    TOKEN,
                    "--twilio-status-callback-url",
                    url,
                ],
                dev,
            )
        };
        let ok = with("https://login.example.com/api/webhooks/twilio", false)
            .expect("valid")
            .expect("on");
        assert_eq!(
            ok.status_callback_url.as_deref(),
            Some("https://login.example.com/api/webhooks/twilio")
        );
        for bad in [
            "http://login.example.com/api/webhooks/twilio",
            "https://login.example.com/api/webhooks/twilio?x=1",
            "login.example.com/api/webhooks/twilio",
            "https:///api/webhooks/twilio",
        ] {
            assert!(with(bad, false).is_err(), "{bad}");
        }
        assert!(with("http://login.example.com/api/webhooks/twilio", true).is_ok());
        assert!(with("http://127.0.0.1:8080/api/webhooks/twilio", false).is_ok());
        assert!(with("http://127.0.0.1.example.com/api/webhooks/twilio", false).is_err());
    }
}
