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
    parse_with_type(input).map(|number| number.phone)
}

/// A number with what its numbering plan says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    pub phone: PhoneNumber,
    /// Mobile, fixed line, premium rate, …
    pub kind: NumberType,
    /// Its country calling code (`91`, `44`, `1`).
    pub calling_code: u16,
}

/// [`parse`], and what the numbering plan says of the number.
pub fn parse_with_type(input: &str) -> Result<Described, InvalidPhone> {
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
    // A number of no country (satellite, international premium and freephone: +870,
    // +881, +882, +979, +800, …) is none of the kinds a country's plan has.
    let kind = match number.country().id() {
        Some(_) => NumberType::of(number.number_type(&phonenumber::metadata::DATABASE)),
        None => NumberType::Other,
    };
    Ok(Described {
        phone: PhoneNumber::from_e164_digits(e164.trim_start_matches('+'))?,
        kind,
        calling_code: number.code().value(),
    })
}

/// The kinds of number the numbering plans tell apart, by `ALLOWED_NUMBER_TYPES`'s
/// names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberType {
    Mobile,
    FixedLine,
    /// Where the plan does not tell them apart (the United States, Canada, …).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    Uan,
    Voicemail,
    /// Anything else: satellite and international networks (+870, +881, +979 …).
    Other,
}

impl NumberType {
    const NAMES: [(&'static str, NumberType); 12] = [
        ("mobile", NumberType::Mobile),
        ("fixed_line", NumberType::FixedLine),
        ("fixed_line_or_mobile", NumberType::FixedLineOrMobile),
        ("toll_free", NumberType::TollFree),
        ("premium_rate", NumberType::PremiumRate),
        ("shared_cost", NumberType::SharedCost),
        ("personal_number", NumberType::PersonalNumber),
        ("voip", NumberType::Voip),
        ("pager", NumberType::Pager),
        ("uan", NumberType::Uan),
        ("voicemail", NumberType::Voicemail),
        ("other", NumberType::Other),
    ];

    fn of(kind: phonenumber::Type) -> Self {
        use phonenumber::Type;
        match kind {
            Type::Mobile => NumberType::Mobile,
            Type::FixedLine => NumberType::FixedLine,
            Type::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            Type::TollFree => NumberType::TollFree,
            Type::PremiumRate => NumberType::PremiumRate,
            Type::SharedCost => NumberType::SharedCost,
            Type::PersonalNumber => NumberType::PersonalNumber,
            Type::Voip => NumberType::Voip,
            Type::Pager => NumberType::Pager,
            Type::Uan => NumberType::Uan,
            Type::Voicemail => NumberType::Voicemail,
            _ => NumberType::Other,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("other", |(name, _)| name)
    }
}

/// `ALLOWED_NUMBER_TYPES`: the kinds of number codes may be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedNumberTypes(Vec<NumberType>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a kind of number: {0:?}")]
pub struct UnknownNumberType(String);

impl std::str::FromStr for AllowedNumberTypes {
    type Err = UnknownNumberType;

    /// Names separated by commas, such as `mobile,fixed_line_or_mobile`; `all` allows
    /// every kind.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        if list.trim() == "all" {
            return Ok(Self(
                NumberType::NAMES.iter().map(|(_, kind)| *kind).collect(),
            ));
        }
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                NumberType::NAMES
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, kind)| *kind)
                    .ok_or_else(|| UnknownNumberType(name.chars().take(32).collect()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl AllowedNumberTypes {
    pub fn allow(&self, kind: NumberType) -> bool {
        self.0.contains(&kind)
    }
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
    #[test]
    fn premium_satellite_and_toll_numbers_are_told_from_mobiles() {
        use super::{AllowedNumberTypes, NumberType, parse_with_type};
        let kind = |input: &str| parse_with_type(input).map(|number| number.kind);
        assert_eq!(kind("+91 98765 43210"), Ok(NumberType::Mobile));
        assert_eq!(kind("+44 7911 123456"), Ok(NumberType::Mobile));
        assert_eq!(kind("+1 415 555 2671"), Ok(NumberType::FixedLineOrMobile));
        assert_eq!(kind("+1 900 555 0123"), Ok(NumberType::PremiumRate));
        assert_eq!(kind("+44 909 879 0000"), Ok(NumberType::PremiumRate));
        assert_eq!(kind("+1 800 555 0123"), Ok(NumberType::TollFree));
        for satellite in ["+870 301234567", "+881 612345678", "+800 12345678"] {
            assert_eq!(kind(satellite), Ok(NumberType::Other), "{satellite}");
        }
        let defaults: AllowedNumberTypes = "mobile,fixed_line_or_mobile".parse().expect("names");
        for refused in ["+1 900 555 0123", "+44 909 879 0000", "+1 800 555 0123"] {
            let kind = parse_with_type(refused).expect("a valid number").kind;
            assert!(!defaults.allow(kind), "{refused} is {kind:?}");
        }
        assert!("mobile,satellite".parse::<AllowedNumberTypes>().is_err());
        assert!(
            "all"
                .parse::<AllowedNumberTypes>()
                .expect("all")
                .allow(NumberType::PremiumRate)
        );
        assert_eq!(
            parse_with_type("+44 7911 123456").map(|n| n.calling_code),
            Ok(44)
        );
    }

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
