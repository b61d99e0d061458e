//! `TEST_PHONES`: phones that log in with a fixed code and get no message, for app-store
//! reviewers and end-to-end tests of an app. A send to one reaches no provider and spends
//! no budget; its code is the fixed one and verifies like any other, held to the same
//! per-phone limits and attempt caps. The codes have at least as many digits as a phone
//! past its cap of wrong guesses gets ([`LONG_CODE_DIGITS`]): a fixed code cannot grow,
//! so it is long from the start, and guessing at it never locks the reviewer out.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

use crate::phone::PhoneNumber;
use crate::store::LONG_CODE_DIGITS;

/// Longest fixed code: what WhatsApp's authentication templates take.
const MAX_CODE_DIGITS: usize = 15;

/// The review phones and their fixed codes.
#[derive(Clone, Default)]
pub struct ReviewPhones(HashMap<PhoneNumber, SecretString>);

impl std::fmt::Debug for ReviewPhones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The phones are no secret to the operator, the codes are.
        f.debug_struct("ReviewPhones")
            .field("phones", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// What is wrong with a `TEST_PHONES` entry (it never repeats the code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReviewPhone {
    #[error("must be phone=code pairs, comma-separated")]
    NotAPair,
    // The entry is not repeated: a swapped pair would put the code in the log.
    #[error("has an entry whose phone is not a valid number")]
    Phone,
    #[error("gives {0} a code that is not 10 to 15 digits")]
    Code(String),
    #[error("lists {0} twice")]
    Twice(String),
}

impl std::str::FromStr for ReviewPhones {
    type Err = InvalidReviewPhone;

    /// `phone=code` pairs, comma-separated; phones as send-otp takes them.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut phones = HashMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (phone, code) = entry.split_once('=').ok_or(InvalidReviewPhone::NotAPair)?;
            let phone = crate::phone::parse(phone).map_err(|_| InvalidReviewPhone::Phone)?;
            let code = code.trim();
            let digits = LONG_CODE_DIGITS as usize..=MAX_CODE_DIGITS;
            if !digits.contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidReviewPhone::Code(phone.to_string()));
            }
            if phones
                .insert(phone.clone(), SecretString::from(code.to_owned()))
                .is_some()
            {
                return Err(InvalidReviewPhone::Twice(phone.to_string()));
            }
        }
        Ok(Self(phones))
    }
}

impl ReviewPhones {
    /// The fixed code of `phone`, if it is a review phone.
    pub fn code_of(&self, phone: &PhoneNumber) -> Option<&str> {
        self.0.get(phone).map(|code| code.expose_secret())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_with_phones_in_any_spelling() {
        let phones: ReviewPhones = "+1 415 555 2671=4242424242, 919876543210=123456789012345"
            .parse()
            .expect("pairs");
        assert_eq!(phones.len(), 2);
        let phone = |digits| PhoneNumber::from_e164_digits(digits).expect("a phone");
        assert_eq!(phones.code_of(&phone("14155552671")), Some("4242424242"));
        assert_eq!(
            phones.code_of(&phone("919876543210")),
            Some("123456789012345")
        );
        assert_eq!(phones.code_of(&phone("447911123456")), None);
        assert!("".parse::<ReviewPhones>().expect("empty").is_empty());
    }

    #[test]
    fn a_bad_entry_is_named_without_its_code() {
        let err = |list: &str| list.parse::<ReviewPhones>().err().map(|e| e.to_string());
        assert_eq!(
            err("14155552671"),
            Some("must be phone=code pairs, comma-separated".into())
        );
        // A swapped pair names no code.
        assert_eq!(
            err("4242424242=14155552671"),
            Some("has an entry whose phone is not a valid number".into())
        );
        for bad in ["424242", "12ab567890", "1234567890123456"] {
            let message = err(&format!("14155552671={bad}")).expect("refused");
            assert_eq!(
                message,
                "gives 14155552671 a code that is not 10 to 15 digits"
            );
            assert!(!message.contains(bad));
        }
        assert_eq!(
            err("14155552671=4242424242,+1 415 555 2671=5252525252"),
            Some("lists 14155552671 twice".into())
        );
        assert!(
            !format!("{:?}", "14155552671=4242424242".parse::<ReviewPhones>())
                .contains("4242424242")
        );
    }
}
