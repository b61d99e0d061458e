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

/// A country calling code (`91`, `44`, `1`). Calling codes are a prefix code (no code
/// begins another), so a number is in a country exactly when its E.164 digits start
/// with that country's code.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallingCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a calling code: {0:?}")]
pub struct InvalidCallingCode(pub String);

impl std::str::FromStr for CallingCode {
    type Err = InvalidCallingCode;

    /// One to three digits, not starting with 0, with or without a `+`.
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        let code = code.trim();
        let digits = code.strip_prefix('+').unwrap_or(code);
        let shaped = (1..=3).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        shaped
            .then(|| Self(digits.to_owned()))
            .ok_or_else(|| InvalidCallingCode(code.chars().take(16).collect()))
    }
}

impl CallingCode {
    /// Whether `phone` is in this country.
    pub fn holds(&self, phone: &PhoneNumber) -> bool {
        phone.as_str().starts_with(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Calling codes from a comma-separated setting such as `91,44,1` (empty entries are
/// skipped).
pub fn calling_codes(list: &str) -> Result<Vec<CallingCode>, InvalidCallingCode> {
    list.split(',')
        .filter(|code| !code.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// A value per country, from a setting such as `55=pt_BR,91=hi`: what a phone's country
/// says, if it says anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByCountry<T>(Vec<(CallingCode, T)>);

impl<T> Default for ByCountry<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// A `code=value` entry that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a `calling code=value` pair: {0:?}")]
pub struct InvalidCountryEntry(pub String);

impl<T> ByCountry<T> {
    /// Reads `code=value` pairs, comma-separated, each value with `value`.
    pub fn parse<E>(
        list: &str,
        value: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Self, InvalidCountryEntry> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let bad = || InvalidCountryEntry(entry.chars().take(32).collect());
                let (code, text) = entry.split_once('=').ok_or_else(bad)?;
                let code = code.parse().map_err(|_| bad())?;
                let value = value(text.trim()).map_err(|_| bad())?;
                Ok((code, value))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The value of `phone`'s country, if it has one.
    pub fn of(&self, phone: &PhoneNumber) -> Option<&T> {
        self.0
            .iter()
            .find(|(code, _)| code.holds(phone))
            .map(|(_, value)| value)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_read_with_or_without_a_plus_and_match_by_prefix() {
        let codes = calling_codes("91, +44,,1").expect("codes");
        let phone = |digits| PhoneNumber::from_e164_digits(digits).expect("a phone");
        assert!(codes[0].holds(&phone("919876543210")));
        assert!(codes[1].holds(&phone("447911123456")));
        assert!(!codes[1].holds(&phone("919876543210")));
        for bad in ["0", "1234", "9x", "+"] {
            assert!(bad.parse::<CallingCode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_value_per_country_is_found_by_the_phones_calling_code() {
        let phone = |digits| PhoneNumber::from_e164_digits(digits).expect("a phone");
        let map =
            ByCountry::parse("55=pt_BR, 91 = hi", |v| Ok::<_, ()>(v.to_owned())).expect("pairs");
        assert_eq!(
            map.of(&phone("5511987654321")).map(String::as_str),
            Some("pt_BR")
        );
        assert_eq!(
            map.of(&phone("919876543210")).map(String::as_str),
            Some("hi")
        );
        assert_eq!(map.of(&phone("14155552671")), None);
        for bad in ["55", "x=pt", "55=", "55=pt,91"] {
            let parsed = ByCountry::parse(bad, |v| {
                if v.is_empty() {
                    Err(())
                } else {
                    Ok(v.to_owned())
                }
            });
            assert!(parsed.is_err(), "{bad}");
        }
    }

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
