//! `X-Twilio-Signature`, as Twilio signs the requests it makes to an application
//! (https://www.twilio.com/docs/usage/webhooks/webhooks-security): the Base64 of an
//! HMAC-SHA1, keyed with the account's auth token, over the full URL Twilio requests
//! (query string included) followed by each POST parameter, sorted by name, as its name
//! then its value, with nothing between. Twilio's helper library
//! (twilio-python `twilio/request_validator.py`) sorts repeated names by value and
//! drops exact repeats; so does this.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The `X-Twilio-Signature` of a form POST of `params` to `url`, under `auth_token`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(url.as_bytes());
    for (name, value) in sorted {
        context.update(name.as_bytes());
        context.update(value.as_bytes());
    }
    STANDARD.encode(context.sign().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn the_published_example_signs_as_twilio_says() {
        // The example of Twilio's security page, as its SDKs' tests and many others
        // repeat it; the order given here is not the sorted one, on purpose.
        let params = [
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
        ];
        assert_eq!(
            twilio_signature("12345", URL, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn twilio_pythons_own_test_vector_signs_the_same() {
        // tests/unit/test_request_validator.py in twilio-python.
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            twilio_signature("12345", URL, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn the_url_and_every_parameter_count() {
        let params = [("MessageSid", "SM1"), ("MessageStatus", "sent")];
        let signed = twilio_signature("token", "http://h:1/cb?x=1", &params);
        assert_eq!(signed.len(), 28, "20 bytes in Base64");
        assert_ne!(twilio_signature("token", "http://h:1/cb", &params), signed);
        assert_ne!(
            twilio_signature("other", "http://h:1/cb?x=1", &params),
            signed
        );
        assert_ne!(
            twilio_signature("token", "http://h:1/cb?x=1", &params[..1]),
            signed
        );
        // A repeated pair counts once, as Twilio's validator reads it.
        let repeated = [params[0], params[1], params[1]];
        assert_eq!(
            twilio_signature("token", "http://h:1/cb?x=1", &repeated),
            signed
        );
    }
}
