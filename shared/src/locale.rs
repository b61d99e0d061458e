//! A template language as WhatsApp names them (`en`, `en_US`, `pt_BR`, `fil`): the
//! language a code is sent in. Apps may write it the BCP 47 way (`pt-BR`, `pt-br`);
//! every spelling is read into WhatsApp's one form, language lowercase and region
//! uppercase, joined by `_`.

use serde::{Deserialize, Serialize};

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
        let mut parts = input.split(['_', '-']);
        let language = parts.next().unwrap_or_default();
        let region = parts.next();
        if parts.next().is_some()
            || !(2..=3).contains(&language.len())
            || !language.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(invalid());
        }
        let mut normal = language.to_ascii_lowercase();
        if let Some(region) = region {
            if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid());
            }
            normal.push('_');
            normal.push_str(&region.to_ascii_uppercase());
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
        ] {
            assert_eq!(
                Locale::parse(input).map(String::from).as_deref(),
                Ok(normal),
                "{input}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "p",
            "portuguese",
            "pt_BRA",
            "pt_B",
            "pt_BR_x",
            "1n",
            "pt_1R",
            "pt__BR",
            "<b>",
        ] {
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
