//! Keeps codes unreadable at rest: a keyed MAC to verify a guess, and an authenticated
//! encryption of the code that only a worker holding `OTP_SECRET` can open to send it.
//!
//! Both keys are derived from `OTP_SECRET` with HMAC-SHA256 under distinct labels, so a
//! leak of one derived key does not give the other. Both bind the code to its phone, so
//! a sealed code or MAC copied to another phone's record does not verify or open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;

use crate::phone::PhoneNumber;

/// Length of a code MAC in bytes.
pub const MAC_LEN: usize = 32;

/// Derives and holds the two keys made from `OTP_SECRET`.
pub struct CodeSealer {
    mac_key: hmac::Key,
    seal_key: RandomizedNonceKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed code could not be opened (wrong key, wrong phone or tampered)")]
    Open,
    #[error("the system could not encrypt the code")]
    Seal,
}

/// A code opened for sending. Its `Debug` hides the digits, so it cannot reach a log
/// line by accident; only the WATI request body reads it, through [`PlainCode::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCode(String);

impl PlainCode {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainCode(..)")
    }
}

impl std::fmt::Debug for CodeSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSealer(..)")
    }
}

impl CodeSealer {
    /// `secret` is `OTP_SECRET`; its length is checked by the configuration.
    pub fn new(secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mac_key_bytes = hmac::sign(&root, b"otp-gateway/v1/code-mac");
        let seal_key_bytes = hmac::sign(&root, b"otp-gateway/v1/code-seal");
        Self {
            mac_key: hmac::Key::new(hmac::HMAC_SHA256, mac_key_bytes.as_ref()),
            // A 32-byte key always fits AES-256-GCM.
            seal_key: RandomizedNonceKey::new(&AES_256_GCM, seal_key_bytes.as_ref())
                .unwrap_or_else(|_| unreachable!("HMAC-SHA256 output is a valid AES-256 key")),
        }
    }

    /// The MAC that verification compares (in constant time, inside Redis).
    pub fn mac(&self, phone: &PhoneNumber, code: &str) -> [u8; MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.mac_key);
        ctx.update(phone.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(code.as_bytes());
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Encrypts the code for the worker: `nonce || ciphertext || tag`.
    pub fn seal(&self, phone: &PhoneNumber, code: &str) -> Result<Vec<u8>, SealError> {
        let mut in_out = code.as_bytes().to_vec();
        let nonce = self
            .seal_key
            .seal_in_place_append_tag(Aad::from(phone.as_str().as_bytes()), &mut in_out)
            .map_err(|_| SealError::Seal)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Opens what [`CodeSealer::seal`] made for the same phone.
    pub fn open(&self, phone: &PhoneNumber, sealed: &[u8]) -> Result<PlainCode, SealError> {
        if sealed.len() <= NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .seal_key
            .open_in_place(nonce, Aad::from(phone.as_str().as_bytes()), &mut in_out)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec())
            .map(PlainCode)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn phone(digits: &str) -> PhoneNumber {
        PhoneNumber::from_e164_digits(digits).expect("phone")
    }

    #[test]
    fn a_sealed_code_opens_for_its_phone_only() {
        let sealer = CodeSealer::new(SECRET);
        let sealed = sealer.seal(&phone("919876543210"), "482913").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"482913"));
        let opened = sealer.open(&phone("919876543210"), &sealed).expect("open");
        assert_eq!(opened.expose(), "482913");
        assert_eq!(format!("{opened:?}"), "PlainCode(..)");
        assert!(sealer.open(&phone("919876543211"), &sealed).is_err());
    }

    #[test]
    fn another_secret_cannot_open_or_match() {
        let a = CodeSealer::new(SECRET);
        let b = CodeSealer::new(b"another-secret-of-at-least-32-bytes!");
        let one = phone("14155552671");
        let sealed = a.seal(&one, "1234").expect("seal");
        assert!(b.open(&one, &sealed).is_err());
        assert_ne!(a.mac(&one, "1234"), b.mac(&one, "1234"));
    }

    #[test]
    fn a_tampered_seal_is_refused() {
        let sealer = CodeSealer::new(SECRET);
        let one = phone("14155552671");
        let mut sealed = sealer.seal(&one, "1234").expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sealer.open(&one, &sealed).is_err());
        assert!(sealer.open(&one, &sealed[..5]).is_err());
    }

    #[test]
    fn the_mac_depends_on_phone_and_code() {
        let sealer = CodeSealer::new(SECRET);
        let (one, two) = (phone("14155552671"), phone("14155552672"));
        assert_eq!(sealer.mac(&one, "1234"), sealer.mac(&one, "1234"));
        assert_ne!(sealer.mac(&one, "1234"), sealer.mac(&one, "1235"));
        assert_ne!(sealer.mac(&one, "1234"), sealer.mac(&two, "1234"));
    }
}
