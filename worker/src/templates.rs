//! Which template a code goes out in: the default (`WATI_TEMPLATE_NAME`) or one per
//! language (`WATI_LOCALE_TEMPLATES`), picked from the languages a job asks for, and
//! the one parameter (`WATI_TEMPLATE_PARAM`) every one of them carries the code in.

use std::collections::BTreeMap;
use std::sync::Arc;

use otp_shared::config::ConfigError;
use otp_shared::locale::Locale;

/// WATI's template names are Meta's: at most 512 characters.
const MAX_NAME_CHARS: usize = 512;

/// A template as the worker names it in calls: cheap to clone into every send.
pub type TemplateName = Arc<str>;

/// The templates codes go out in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    default: TemplateName,
    by_locale: BTreeMap<Locale, TemplateName>,
    param: String,
}

/// A configured template and the languages that pick it (none for the default alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    pub name: TemplateName,
    pub is_default: bool,
    pub locales: Vec<Locale>,
}

fn template_name(name: &str, setting: &'static str) -> Result<TemplateName, ConfigError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ConfigError::Invalid {
            name: setting,
            problem: "must name templates of 1 to 512 characters",
        });
    }
    Ok(Arc::from(name))
}

impl Templates {
    /// From `WATI_TEMPLATE_NAME`, `WATI_TEMPLATE_PARAM` and `WATI_LOCALE_TEMPLATES`
    /// (`pt_BR=login_otp_pt,hi=login_otp_hi`).
    pub fn new(default: &str, param: &str, by_locale: &str) -> Result<Self, ConfigError> {
        let default = template_name(default, "WATI_TEMPLATE_NAME")?;
        let param = param.trim();
        if param.is_empty() || param.chars().count() > 64 || param.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                name: "WATI_TEMPLATE_PARAM",
                problem: "must be the parameter's name, 1 to 64 characters (`1` for an authentication template)",
            });
        }
        let mut map = BTreeMap::new();
        for entry in by_locale
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let bad = || ConfigError::Invalid {
                name: "WATI_LOCALE_TEMPLATES",
                problem: "must be locale=template pairs separated by commas, each locale once, such as pt_BR=login_otp_pt,hi=login_otp_hi",
            };
            let (locale, name) = entry.split_once('=').ok_or_else(bad)?;
            let locale = Locale::parse(locale).map_err(|_| bad())?;
            let name = template_name(name, "WATI_LOCALE_TEMPLATES")?;
            if map.insert(locale, name).is_some() {
                return Err(bad());
            }
        }
        Ok(Self {
            default,
            by_locale: map,
            param: param.to_owned(),
        })
    }

    /// The template for a send that asks for `locales`, most wanted first: for each, an
    /// exact match, then its language alone; else the default.
    pub fn pick(&self, locales: &[Locale]) -> &TemplateName {
        locales
            .iter()
            .find_map(|locale| {
                self.by_locale.get(locale).or_else(|| {
                    locale
                        .language_only()
                        .and_then(|language| self.by_locale.get(&language))
                })
            })
            .unwrap_or(&self.default)
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The name of the parameter that carries the code.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// Every template a code may go out in, each once, the default first.
    pub fn configured(&self) -> Vec<Configured> {
        let mut all = vec![Configured {
            name: self.default.clone(),
            is_default: true,
            locales: Vec::new(),
        }];
        for (locale, name) in &self.by_locale {
            match all.iter_mut().find(|c| c.name == *name) {
                Some(known) => known.locales.push(locale.clone()),
                None => all.push(Configured {
                    name: name.clone(),
                    is_default: false,
                    locales: vec![locale.clone()],
                }),
            }
        }
        all
    }
}

impl Configured {
    /// How an operator reads what the template is for: `default`, `pt_BR`, `default, hi`.
    pub fn used_for(&self) -> String {
        let mut uses: Vec<&str> = Vec::new();
        if self.is_default {
            uses.push("default");
        }
        uses.extend(self.locales.iter().map(Locale::as_str));
        uses.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locales(list: &[&str]) -> Vec<Locale> {
        list.iter()
            .map(|l| Locale::parse(l).expect("a locale"))
            .collect()
    }

    fn templates() -> Templates {
        Templates::new(
            "login_otp",
            "1",
            "pt_BR=login_otp_pt_br, pt=login_otp_pt, hi=login_otp_hi",
        )
        .expect("valid")
    }

    #[test]
    fn an_exact_locale_then_its_language_then_the_next_locale_then_the_default() {
        let t = templates();
        let pick = |list: &[&str]| t.pick(&locales(list)).to_string();
        assert_eq!(pick(&["pt_BR"]), "login_otp_pt_br");
        assert_eq!(pick(&["pt_PT"]), "login_otp_pt", "its language alone");
        assert_eq!(pick(&["pt"]), "login_otp_pt");
        assert_eq!(
            pick(&["fr_FR", "hi"]),
            "login_otp_hi",
            "the country's locale next"
        );
        assert_eq!(pick(&["fr_FR", "pt_BR"]), "login_otp_pt_br");
        assert_eq!(
            pick(&["hi", "pt_BR"]),
            "login_otp_hi",
            "the app's locale first"
        );
        assert_eq!(pick(&["fr"]), "login_otp");
        assert_eq!(pick(&[]), "login_otp");
    }

    #[test]
    fn every_configured_template_is_listed_once_with_what_picks_it() {
        let t = Templates::new(
            "login_otp",
            "1",
            "hi=login_otp_hi,en_GB=login_otp,mr=login_otp_hi",
        )
        .expect("valid");
        let listed: Vec<(String, String)> = t
            .configured()
            .iter()
            .map(|c| (c.name.to_string(), c.used_for()))
            .collect();
        assert_eq!(
            listed,
            [
                ("login_otp".to_owned(), "default, en_GB".to_owned()),
                ("login_otp_hi".to_owned(), "hi, mr".to_owned()),
            ]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let name = |default: &str, param: &str, map: &str| {
            Templates::new(default, param, map).err().map(|e| match e {
                ConfigError::Invalid { name, .. } => name,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(name("", "1", ""), Some("WATI_TEMPLATE_NAME"));
        assert_eq!(name("login_otp", " ", ""), Some("WATI_TEMPLATE_PARAM"));
        for map in ["pt_BR", "portuguese=x", "pt_BR=", "hi=a,hi=b", "hi=a\nb"] {
            assert_eq!(
                name("login_otp", "1", map),
                Some("WATI_LOCALE_TEMPLATES"),
                "{map}"
            );
        }
        assert_eq!(name("login_otp", "1", "hi-in=otp_hi , "), None);
    }
}
