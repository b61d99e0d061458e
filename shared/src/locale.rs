//! A template language as WhatsApp names them (`en`, `en_US`, `pt_BR`, `fil`): the
//! language a code is sent in. Apps send what their platform calls the device's locale,
//! the BCP 47 way (`pt-BR`, `es-419`, `zh-Hant-TW`, `sr-Latn-RS`, `en-US-u-ca-gregory`):
//! every spelling is read into WhatsApp's one form, the language lowercase and a
//! two-letter region uppercase, joined by `_`; a script, a numeric region and whatever
//! follows are left out, as WhatsApp's languages have none.

use serde::{Deserialize, Serialize};

/// Longer input is not a locale.
const MAX_INPUT_CHARS: usize = 35;

/// A language (two or three letters) with an optional region (two letters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a locale (a language such as `hi`, or language and region such as `pt_BR`): {0:?}")]
pub struct InvalidLocale(String);

impl Locale {
    pub fn parse(input: &str) -> Result<Self, InvalidLocale> {
        let invalid = || InvalidLocale(input.chars().take(16).collect());
        let input = input.trim();
        if input.len() > MAX_INPUT_CHARS {
            return Err(invalid());
        }
        let mut subtags = input.split(['_', '-']);
        let language = subtags.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(invalid());
        }
        let mut normal = language.to_ascii_lowercase();
        for subtag in subtags {
            let letters = subtag.bytes().all(|b| b.is_ascii_alphabetic());
            match subtag.len() {
                // A script (`Hant`): WhatsApp's languages name none.
                4 if letters => continue,
                2 if letters => {
                    normal.push('_');
                    normal.push_str(&subtag.to_ascii_uppercase());
                }
                // A region of digits (`419`), a variant or an extension: the language
                // (and the region so far) is what a template can match.
                _ => {}
            }
            break;
        }
        Ok(Self(normal))
    }

    /// The language alone (`pt` of `pt_BR`); `None` when there is no region.
    pub fn language_only(&self) -> Option<Locale> {
        self.0
            .split_once('_')
            .map(|(language, _)| Locale(language.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Locale {
    type Error = InvalidLocale;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Locale> for String {
    fn from(locale: Locale) -> Self {
        locale.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_is_read_into_whatsapps_form() {
        for (input, normal) in [
            ("pt_BR", "pt_BR"),
            ("pt-BR", "pt_BR"),
            ("pt-br", "pt_BR"),
            (" hi ", "hi"),
            ("EN", "en"),
            ("fil", "fil"),
            ("zh_hk", "zh_HK"),
            // What devices report.
            ("es-419", "es"),
            ("zh-Hant-TW", "zh_TW"),
            ("sr-Latn-RS", "sr_RS"),
            ("en-US-u-ca-gregory", "en_US"),
            ("de-DE-1996", "de_DE"),
            ("pt_BR_x", "pt_BR"),
        ] {
            assert_eq!(
                Locale::parse(input).map(String::from).as_deref(),
                Ok(normal),
                "{input}"
            );
        }
    }

    #[test]
    fn no_language_no_locale() {
        for bad in ["", "p", "portuguese", "1n", "<b>", "-BR", &"en-".repeat(20)] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_language_alone_drops_the_region() {
        let locale = Locale::parse("pt_BR").expect("a locale");
        assert_eq!(
            locale.language_only().map(String::from).as_deref(),
            Some("pt")
        );
        assert_eq!(Locale::parse("hi").expect("a locale").language_only(), None);
    }
}
