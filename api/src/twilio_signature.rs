//! Twilio's `X-Twilio-Signature` on status callbacks: Base64 of HMAC-SHA1, keyed with the
//! account's auth token, of the URL Twilio posted to (its query string included) followed
//! by every posted parameter's name and value, sorted by name (a repeated name's values
//! sorted too). Twilio's SDKs accept the URL with and without its default port, as
//! Twilio has signed both; so does this. (twilio.com/docs/usage/webhooks/webhooks-security,
//! and twilio-python's `RequestValidator`.)

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The signature Twilio sends for a post of `params` to `url`.
pub fn sign(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token);
    let mut context = hmac::Context::with_key(&key);
    context.update(url.as_bytes());
    for (name, value) in sorted {
        context.update(name.as_bytes());
        context.update(value.as_bytes());
    }
    STANDARD.encode(context.sign().as_ref())
}

/// Whether `signature` is Twilio's for a post of `params` to `url` (or to `url` with its
/// default port added or taken away), compared in constant time.
pub fn verify(auth_token: &[u8], url: &str, params: &[(String, String)], signature: &str) -> bool {
    port_variants(url).iter().any(|url| {
        let expected = sign(auth_token, url, params);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), signature.as_bytes())
            .is_ok()
    })
}

/// `url` as given, and with its scheme's default port added (or, if it has it, removed).
fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return variants,
    };
    let port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return variants,
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let other = match authority.strip_suffix(port) {
        Some(bare) => format!("{scheme}://{bare}{path}"),
        None if !authority.contains(':') => format!("{scheme}://{authority}{port}{path}"),
        None => return variants,
    };
    variants.push(other);
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's published example (twilio.com/docs/usage/security).
    fn example() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn twilios_published_example_signs_as_twilio_says() {
        assert_eq!(
            sign(b"12345", URL, &example()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // The order of the posted parameters does not matter.
        let mut reversed = example();
        reversed.reverse();
        assert!(verify(
            b"12345",
            URL,
            &reversed,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn a_changed_parameter_url_token_or_signature_fails() {
        let signature = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        let mut changed = example();
        changed[2].1 = "1235".into();
        assert!(!verify(b"12345", URL, &changed, signature));
        assert!(!verify(
            b"12345",
            "https://mycompany.com/myapp.php?foo=1",
            &example(),
            signature
        ));
        assert!(!verify(b"12346", URL, &example(), signature));
        assert!(!verify(
            b"12345",
            URL,
            &example(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ"
        ));
        assert!(!verify(b"12345", URL, &example(), ""));
    }

    #[test]
    fn the_default_port_may_be_there_or_not() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign(b"12345", with_port, &example()),
            "EpDEmp1PyjDYp77YxYU3GILBWzE="
        );
        assert!(verify(
            b"12345",
            URL,
            &example(),
            "EpDEmp1PyjDYp77YxYU3GILBWzE="
        ));
        assert!(verify(
            b"12345",
            with_port,
            &example(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert_eq!(
            port_variants("http://127.0.0.1:8080/x"),
            ["http://127.0.0.1:8080/x"]
        );
    }
}
