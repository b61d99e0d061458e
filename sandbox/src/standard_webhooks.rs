//! Standard Webhooks, as a receiver checks a delivery: the scheme of the Standard
//! Webhooks specification 1.0.0 (https://www.standardwebhooks.com; the text is
//! `spec/standard-webhooks.md` in github.com/standard-webhooks/standard-webhooks),
//! implemented from the specification, not from the product's sender:
//!
//! - The headers: `webhook-id`, `webhook-timestamp` ("integer unix timestamp (seconds
//!   since epoch)") and `webhook-signature`, "a space delimited list of signatures", each
//!   a version, a comma and the Base64 signature; `v1` is HMAC-SHA256, `v1a` ed25519
//!   (which a symmetric secret cannot check, so it is passed over).
//! - The signed content: `{webhook-id}.{webhook-timestamp}.{body}`, the body byte for
//!   byte as received (the spec warns against parsing and re-serializing it first).
//! - The secret: `whsec_` and the Base64 of the key, "at least 24 bytes".
//! - Rotation: a delivery is authentic if any one of its signatures verifies; the
//!   receiver here also holds several secrets, for its own side of a rotation.
//! - Comparison in constant time (the spec requires it: a timing leak makes the
//!   receiver a signing oracle); `aws_lc_rs::hmac::verify` does it.
//! - The timestamp within a tolerance of now, against replays: the spec leaves the
//!   tolerance open; its reference libraries (`libraries/*` in the same repository, e.g.
//!   `TOLERANCE_IN_SECONDS = 5 * 60` in the Rust one) refuse more than 5 minutes either
//!   way, and so does this.
//! - The id must hold no `.` (the spec: it "should not be user controlled, or at the
//!   very least not be allowed to include any `.`", which would make the signed content
//!   ambiguous).
//!
//! The order of the checks follows the reference libraries: the headers, then the
//! timestamp's age, then the signatures.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// How every symmetric secret starts.
pub(crate) const SECRET_PREFIX: &str = "whsec_";
/// The shortest key the spec allows, in bytes.
pub(crate) const MIN_KEY_BYTES: usize = 24;
/// How far the timestamp may be from now, either way, in seconds.
pub(crate) const TOLERANCE_SECS: u64 = 5 * 60;
/// The version of an HMAC-SHA256 signature.
const SYMMETRIC_VERSION: &str = "v1";

/// Why a delivery to the app's webhook was refused (answered 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum AppWebhookRejection {
    /// `webhook-id` missing, empty, or holding a `.`.
    #[serde(rename = "bad webhook-id")]
    BadId,
    /// `webhook-timestamp` missing, or not whole Unix seconds.
    #[serde(rename = "bad timestamp")]
    BadTimestamp,
    /// `webhook-signature` missing, or with no `v1` signature in it.
    #[serde(rename = "no signature")]
    NoSignature,
    /// The timestamp is more than 5 minutes old.
    #[serde(rename = "stale timestamp")]
    StaleTimestamp,
    /// The timestamp is more than 5 minutes ahead.
    #[serde(rename = "future timestamp")]
    FutureTimestamp,
    /// No `v1` signature verifies under any of the sandbox's secrets.
    #[serde(rename = "bad signature")]
    BadSignature,
    /// Signed right, but the body is not JSON.
    #[serde(rename = "not JSON")]
    NotJson,
    /// Signed right and JSON, but not an event: an object with a string `type`, a
    /// `timestamp` and an object `data`.
    #[serde(rename = "not an event")]
    NotAnEvent,
}

impl AppWebhookRejection {
    /// The words `reason` carries in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadId => "bad webhook-id",
            Self::BadTimestamp => "bad timestamp",
            Self::NoSignature => "no signature",
            Self::StaleTimestamp => "stale timestamp",
            Self::FutureTimestamp => "future timestamp",
            Self::BadSignature => "bad signature",
            Self::NotJson => "not JSON",
            Self::NotAnEvent => "not an event",
        }
    }
}

/// A signature that verified: which entry of `webhook-signature` (0 for the first,
/// counting every entry, whatever its version) under which of the sandbox's secrets (0
/// for the first configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureMatch {
    pub position: usize,
    pub secret: usize,
}

/// The key of a `whsec_…` secret; an error says what is wrong with it (never the
/// secret itself: it ends up in a log).
pub(crate) fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("an app webhook secret must start with {SECRET_PREFIX}"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| format!("an app webhook secret must be {SECRET_PREFIX} and Base64"))?;
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "an app webhook secret's key must be at least {MIN_KEY_BYTES} bytes, not {}",
            key.len()
        ));
    }
    Ok(key)
}

/// The HMAC key of each secret, in order; `None` for one that does not read (it then
/// verifies nothing; `SandboxArgs` refuses such a secret at start).
pub(crate) fn keys_of(secrets: &[String]) -> Vec<Option<hmac::Key>> {
    secrets
        .iter()
        .map(|secret| {
            key_of(secret)
                .map(|key| hmac::Key::new(hmac::HMAC_SHA256, &key))
                .map_err(|error| tracing::warn!(%error, "app webhook secret ignored"))
                .ok()
        })
        .collect()
}

/// `{id}.{timestamp}.{body}`: what is signed.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `v1` signature (Base64, without `v1,`) of a delivery under `key`.
#[cfg(test)]
pub(crate) fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&key, &signed_content(id, timestamp, body)).as_ref())
}

/// The three headers of one delivery, as received (`None` when absent or not text).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Headers<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a delivery as a Standard Webhooks receiver does, at `now_secs` (Unix seconds):
/// the signatures that verify, at least one, or why it is refused.
pub(crate) fn verify(
    keys: &[Option<hmac::Key>],
    headers: Headers<'_>,
    body: &[u8],
    now_secs: u64,
) -> Result<Vec<SignatureMatch>, AppWebhookRejection> {
    let id = headers
        .id
        .filter(|id| !id.is_empty() && !id.contains('.'))
        .ok_or(AppWebhookRejection::BadId)?;
    let timestamp = headers.timestamp.ok_or(AppWebhookRejection::BadTimestamp)?;
    let sent_at = unix_seconds(timestamp).ok_or(AppWebhookRejection::BadTimestamp)?;
    // Every entry keeps its place in the header, so a test can tell which one verified.
    let signatures: Vec<(usize, &str)> = headers
        .signature
        .unwrap_or_default()
        .split(' ')
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .filter_map(|(position, entry)| match entry.split_once(',') {
            Some((SYMMETRIC_VERSION, signature)) => Some((position, signature)),
            _ => None,
        })
        .collect();
    if signatures.is_empty() {
        return Err(AppWebhookRejection::NoSignature);
    }
    if now_secs.saturating_sub(sent_at) > TOLERANCE_SECS {
        return Err(AppWebhookRejection::StaleTimestamp);
    }
    if sent_at.saturating_sub(now_secs) > TOLERANCE_SECS {
        return Err(AppWebhookRejection::FutureTimestamp);
    }
    let content = signed_content(id, timestamp, body);
    let mut matched = Vec::new();
    for (position, signature) in signatures {
        // A signature that is not Base64 cannot be anyone's: it matches nothing.
        let Ok(tag) = STANDARD.decode(signature) else {
            continue;
        };
        for (secret, key) in keys.iter().enumerate() {
            if let Some(key) = key
                && hmac::verify(key, &content, &tag).is_ok()
            {
                matched.push(SignatureMatch { position, secret });
            }
        }
    }
    if matched.is_empty() {
        Err(AppWebhookRejection::BadSignature)
    } else {
        Ok(matched)
    }
}

/// Whole Unix seconds, digits only (no sign, no fraction, no blanks).
fn unix_seconds(timestamp: &str) -> Option<u64> {
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    timestamp.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of a secret, for a test.
    fn key(secret: &str) -> Vec<u8> {
        key_of(secret).expect("a good secret")
    }

    fn keys(secrets: &[&str]) -> Vec<Option<hmac::Key>> {
        keys_of(&secrets.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> Headers<'a> {
        Headers {
            id: Some(id),
            timestamp: Some(timestamp),
            signature: Some(signature),
        }
    }

    #[test]
    fn the_specs_javascript_test_vector_signs_and_verifies() {
        // libraries/javascript/src/webhook.test.ts, "sign function works", in
        // github.com/standard-webhooks/standard-webhooks.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key(secret), id, "1614265330", body),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let given = headers(
            id,
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        );
        assert_eq!(
            verify(&keys(&[secret]), given, body, 1_614_265_330),
            Ok(vec![SignatureMatch {
                position: 0,
                secret: 0
            }])
        );
        // One byte more (the spec's warning about re-serializing) and it fails.
        assert_eq!(
            verify(
                &keys(&[secret]),
                given,
                br#"{"test":2432232314}"#,
                1_614_265_330
            ),
            Err(AppWebhookRejection::BadSignature)
        );
    }

    #[test]
    fn the_specs_rust_test_vector_signs_the_same() {
        // libraries/rust/src/lib.rs, `test_sign`, in the same repository.
        assert_eq!(
            sign(
                &key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn any_v1_signature_under_any_secret_verifies() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = b"{}";
        let under_new = sign(&key(new), "msg_1", "1000", body);
        // A v1a (ed25519) entry, a v1 that matches nothing, then the right one.
        let header =
            format!("v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=  v1,{under_new}");
        assert_eq!(
            verify(
                &keys(&[old, new]),
                headers("msg_1", "1000", &header),
                body,
                1000
            ),
            Ok(vec![SignatureMatch {
                position: 2,
                secret: 1
            }])
        );
        assert_eq!(
            verify(&keys(&[old]), headers("msg_1", "1000", &header), body, 1000),
            Err(AppWebhookRejection::BadSignature)
        );
    }

    #[test]
    fn headers_are_checked_before_the_signature() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let keys = keys(&[secret]);
        let good = format!("v1,{}", sign(&key(secret), "msg_1", "1000", b"{}"));
        let check = |id, timestamp, signature| {
            verify(&keys, headers(id, timestamp, signature), b"{}", 1000)
        };
        assert!(check("msg_1", "1000", &good).is_ok());
        assert_eq!(check("", "1000", &good), Err(AppWebhookRejection::BadId));
        assert_eq!(
            check("msg.1", "1000", &good),
            Err(AppWebhookRejection::BadId)
        );
        for timestamp in ["", "1000.5", "-1000", "+1000", " 1000", "1e3", "now"] {
            assert_eq!(
                check("msg_1", timestamp, &good),
                Err(AppWebhookRejection::BadTimestamp),
                "{timestamp:?}"
            );
        }
        for signature in [
            "",
            "  ",
            "v1a,AAAA",
            "K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        ] {
            assert_eq!(
                check("msg_1", "1000", signature),
                Err(AppWebhookRejection::NoSignature),
                "{signature:?}"
            );
        }
        assert_eq!(
            check("msg_1", "1000", "v1,not base64!"),
            Err(AppWebhookRejection::BadSignature)
        );
        let missing = Headers {
            signature: None,
            ..headers("msg_1", "1000", "")
        };
        assert_eq!(
            verify(&keys, missing, b"{}", 1000),
            Err(AppWebhookRejection::NoSignature)
        );
    }

    #[test]
    fn the_timestamp_may_be_five_minutes_off_either_way() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let keys = keys(&[secret]);
        let at = |sent: u64, now: u64| {
            let sent = sent.to_string();
            let signature = format!("v1,{}", sign(&key(secret), "msg_1", &sent, b"{}"));
            verify(&keys, headers("msg_1", &sent, &signature), b"{}", now).map(|_| ())
        };
        let now = 1_700_000_000;
        assert_eq!(at(now - 300, now), Ok(()));
        assert_eq!(at(now + 300, now), Ok(()));
        assert_eq!(at(now - 301, now), Err(AppWebhookRejection::StaleTimestamp));
        assert_eq!(
            at(now + 301, now),
            Err(AppWebhookRejection::FutureTimestamp)
        );
    }

    #[test]
    fn secrets_are_whsec_and_base64_of_at_least_24_bytes() {
        assert_eq!(key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").len(), 24);
        // The prefix is required: the spec names it so that a secret is recognised.
        assert!(key_of("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(key_of("whsec_not base64").is_err());
        // 18 bytes: too short.
        assert!(key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZI").is_err());
        let ignored = keys_of(&["whsec_short".to_owned()]);
        assert!(matches!(ignored.as_slice(), [None]));
    }

    #[test]
    fn rejections_read_as_their_words() {
        for rejection in [
            AppWebhookRejection::BadId,
            AppWebhookRejection::BadTimestamp,
            AppWebhookRejection::NoSignature,
            AppWebhookRejection::StaleTimestamp,
            AppWebhookRejection::FutureTimestamp,
            AppWebhookRejection::BadSignature,
            AppWebhookRejection::NotJson,
            AppWebhookRejection::NotAnEvent,
        ] {
            assert_eq!(
                serde_json::to_value(rejection).ok(),
                Some(serde_json::Value::from(rejection.as_str()))
            );
        }
    }
}
