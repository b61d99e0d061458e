//! A phone number in the one form every process stores and WATI takes: E.164 digits
//! without `+`. The api turns what a person typed into this (with numbering-plan
//! data); the worker only ever reads it back from a job, checked again.

use serde::{Deserialize, Serialize};

/// E.164 allows at most 15 digits; the shortest real numbers have 7 or so.
const DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

/// E.164 digits without `+`, e.g. `919876543210`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid phone number")]
pub struct InvalidPhone;

impl PhoneNumber {
    /// Accepts digits only, 7 to 15 of them, not starting with 0 (no country code
    /// does). Numbering-plan checks are the api's business; this is the shape check.
    pub fn from_e164_digits(digits: &str) -> Result<Self, InvalidPhone> {
        let shaped = DIGITS.contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if shaped {
            Ok(Self(digits.to_owned()))
        } else {
            Err(InvalidPhone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = InvalidPhone;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_e164_digits(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> Self {
        phone.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_e164_digits_pass() {
        assert!(PhoneNumber::from_e164_digits("919876543210").is_ok());
        assert!(PhoneNumber::from_e164_digits("14155552671").is_ok());
        for bad in [
            "",
            "+919876543210",
            "91 98765 43210",
            "0919876543210",
            "123456",
            "1234567890123456",
            "91987654321a",
        ] {
            assert_eq!(
                PhoneNumber::from_e164_digits(bad),
                Err(InvalidPhone),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_job_with_a_malformed_phone_does_not_deserialise() {
        let ok: Result<PhoneNumber, _> = serde_json::from_str("\"919876543210\"");
        assert!(ok.is_ok());
        let bad: Result<PhoneNumber, _> = serde_json::from_str("\"91-98765\"");
        assert!(bad.is_err());
    }
}
