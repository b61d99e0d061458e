//! Ids WATI makes up for a message: its own id, the WhatsApp message id, and a
//! `localMessageId` when the sender gave none (v1); Twilio's Message SID; and the
//! human-check tokens the sandbox hands out (`captcha`).
//!
//! They need to be unique and unrelated to anything a receiver knows, not secret, so
//! std's randomly keyed SipHash over a counter serves and the crate needs no RNG.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

fn random_u64() -> u64 {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    // Each `RandomState` has fresh keys, and the counter keeps inputs distinct too.
    RandomState::new().hash_one(DRAWN.fetch_add(1, Ordering::Relaxed))
}

/// A random (version 4) UUID, the form of the `localMessageId` WATI makes up.
pub(crate) fn uuid() -> String {
    let high = random_u64();
    // Version 4 in the third group, variant 10 at the top of the fourth.
    let low = (random_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// 24 hex digits, the form of WATI's own message `id`.
pub(crate) fn object_id() -> String {
    format!("{:016x}{:08x}", random_u64(), random_u64() as u32)
}

/// `wamid.` and 32 hex digits, standing in for WhatsApp's message id.
pub(crate) fn wamid() -> String {
    format!("wamid.{:016X}{:016X}", random_u64(), random_u64())
}

/// `SM` and 32 hex digits, the form of a Twilio Message SID.
pub(crate) fn message_sid() -> String {
    format!("SM{:016x}{:016x}", random_u64(), random_u64())
}

/// `{prefix}.` and 64 hex digits: a human-check token (a test's stand-in for a solved
/// challenge, so unique and unguessable enough, though not a secret).
pub(crate) fn captcha_token(prefix: &str) -> String {
    format!(
        "{prefix}.{:016x}{:016x}{:016x}{:016x}",
        random_u64(),
        random_u64(),
        random_u64(),
        random_u64()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_have_their_shapes_and_do_not_repeat() {
        let uuids: HashSet<String> = (0..1_000).map(|_| uuid()).collect();
        assert_eq!(uuids.len(), 1_000);
        for id in &uuids {
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(id.as_bytes()[14], b'4', "{id}");
            assert!(
                matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
                "{id}"
            );
        }
        let object_id = object_id();
        assert_eq!(object_id.len(), 24);
        assert!(object_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(wamid().len(), "wamid.".len() + 32);
        let sid = message_sid();
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        let token = captcha_token("turnstile");
        let hex = token.strip_prefix("turnstile.").expect("its prefix");
        assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(token, captcha_token("turnstile"));
    }
}
