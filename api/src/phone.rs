//! Phone numbers as people type them, checked against real numbering-plan data and
//! normalised to E.164 digits without `+`, so every way of writing a number is one
//! identity.

use otp_shared::phone::{CallingCode, InvalidCallingCode, calling_codes};
pub use otp_shared::phone::{InvalidPhone, PhoneNumber};

/// Longer input is refused before parsing: no real number needs it.
const MAX_INPUT_CHARS: usize = 32;

/// Accepts `919876543210`, `+91 98765 43210`, `+91-98765-43210`, `+1 (415) 555-2671`.
/// A number without `+` is read as international (country code first).
pub fn parse(input: &str) -> Result<PhoneNumber, InvalidPhone> {
    let input = input.trim();
    if input.chars().count() > MAX_INPUT_CHARS {
        return Err(InvalidPhone);
    }
    let digits = input.strip_prefix('+').unwrap_or(input);
    if digits.is_empty()
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.'))
    {
        return Err(InvalidPhone);
    }
    let number = phonenumber::parse(None, format!("+{digits}")).map_err(|_| InvalidPhone)?;
    if !phonenumber::is_valid(&number) {
        return Err(InvalidPhone);
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    PhoneNumber::from_e164_digits(e164.trim_start_matches('+'))
}

/// `ALLOWED_COUNTRY_CODES`: the calling codes codes may be sent to; empty allows all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedCountries(Vec<CallingCode>);

impl std::str::FromStr for AllowedCountries {
    type Err = InvalidCallingCode;

    /// A comma-separated list such as `91,44,1`.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        calling_codes(list).map(Self)
    }
}

impl AllowedCountries {
    pub fn allow(&self, phone: &PhoneNumber) -> bool {
        self.0.is_empty() || self.0.iter().any(|code| code.holds(phone))
    }
}

/// Loads the numbering-plan data (tens of milliseconds), so the first request after
/// start-up does not pay for it.
pub fn warm_up() {
    let _ = parse("919876543210");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_calling_codes_pass() {
        let india_uk: AllowedCountries = "91, +44".parse().expect("codes");
        let phone = |text| parse(text).expect("a valid number");
        assert!(india_uk.allow(&phone("+91 98765 43210")));
        assert!(india_uk.allow(&phone("+44 7911 123456")));
        assert!(!india_uk.allow(&phone("+1 415 555 2671")));
        assert!(!india_uk.allow(&phone("+61 412 345 678")));
        let everyone = AllowedCountries::default();
        assert!(everyone.allow(&phone("+1 415 555 2671")));
        assert_eq!(
            "".parse::<AllowedCountries>(),
            Ok(AllowedCountries::default())
        );
        for bad in ["0", "1234", "9x", "91,,x"] {
            assert!(bad.parse::<AllowedCountries>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_spec_spelling_is_one_identity() {
        for input in [
            "919876543210",
            "+91 98765 43210",
            "+91-98765-43210",
            " +919876543210 ",
        ] {
            assert_eq!(
                parse(input).map(String::from),
                Ok("919876543210".to_owned()),
                "{input}"
            );
        }
        assert_eq!(
            parse("+1 (415) 555-2671").map(String::from),
            Ok("14155552671".to_owned())
        );
    }

    #[test]
    fn nonsense_is_invalid() {
        for input in [
            "",
            "+",
            "12",
            "abc",
            "91987654321a",
            "+91 98765 4321",
            "0000000000",
            "+999 1234567",
            "919876543210919876543210919876543210",
            "++919876543210",
        ] {
            assert_eq!(parse(input), Err(InvalidPhone), "{input}");
        }
    }
}
