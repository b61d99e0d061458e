//! Phone numbers checked against real numbering-plan data and normalised to E.164
//! digits without `+`, so every way of writing a number is one identity.

/// Longer input is refused before parsing: no real number needs it.
const MAX_INPUT_CHARS: usize = 32;

/// A valid phone number, as E.164 digits without `+` (the form WATI takes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid phone number")]
pub struct InvalidPhone;

impl PhoneNumber {
    /// Accepts `919876543210`, `+91 98765 43210`, `+91-98765-43210`, `+1 (415) 555-2671`.
    /// A number without `+` is read as international (country code first).
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
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
        Ok(Self(e164.trim_start_matches('+').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Loads the numbering-plan data (tens of milliseconds), so the first request
    /// after start-up does not pay for it.
    pub fn warm_up() {
        let _ = Self::parse("919876543210");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_spelling_is_one_identity() {
        for input in [
            "919876543210",
            "+91 98765 43210",
            "+91-98765-43210",
            " +919876543210 ",
        ] {
            assert_eq!(
                PhoneNumber::parse(input).map(|p| p.0),
                Ok("919876543210".to_owned()),
                "{input}"
            );
        }
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-2671").map(|p| p.0),
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
            assert_eq!(PhoneNumber::parse(input), Err(InvalidPhone), "{input}");
        }
    }
}
