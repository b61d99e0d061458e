//! `COUNTRY_SENDS_PER_MINUTE`: a budget of sends per minute for each country, on top of
//! `SENDS_PER_MINUTE`, so that a pumping run into one expensive country is bounded on
//! its own (`91=600,44=100,*=60`: India 600, the UK 100, every other country 60 each).

use std::str::FromStr;

/// The per-country budgets; none by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountryBudgets {
    listed: Vec<(u16, u32)>,
    /// `*`: each country not listed.
    others: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a country budget: {0:?}")]
pub struct BadCountryBudget(String);

impl FromStr for CountryBudgets {
    type Err = BadCountryBudget;

    /// `code=sends` pairs separated by commas; `*` is every country not listed.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut budgets = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || BadCountryBudget(entry.chars().take(32).collect());
            let (code, sends) = entry.split_once('=').ok_or_else(bad)?;
            let sends: u32 = sends.trim().parse().map_err(|_| bad())?;
            match code.trim().trim_start_matches('+') {
                "*" => budgets.others = Some(sends),
                code => {
                    let code: u16 = code.parse().map_err(|_| bad())?;
                    if code == 0 || code > 999 {
                        return Err(bad());
                    }
                    budgets.listed.push((code, sends));
                }
            }
        }
        Ok(budgets)
    }
}

impl CountryBudgets {
    /// The sends per minute a country with `calling_code` may take; `None` (or 0) for no
    /// limit. (`ALLOWED_COUNTRY_CODES` keeps a country out altogether.)
    pub fn limit_of(&self, calling_code: u16) -> Option<u32> {
        self.listed
            .iter()
            .find(|(code, _)| *code == calling_code)
            .map(|(_, sends)| *sends)
            .or(self.others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_countries_have_their_own_and_others_share_the_star() {
        let budgets: CountryBudgets = "91=600, +44=100, *=60".parse().expect("budgets");
        assert_eq!(budgets.limit_of(91), Some(600));
        assert_eq!(budgets.limit_of(44), Some(100));
        assert_eq!(budgets.limit_of(979), Some(60));
        let listed_only: CountryBudgets = "91=600".parse().expect("budgets");
        assert_eq!(listed_only.limit_of(44), None);
        assert_eq!("".parse::<CountryBudgets>(), Ok(CountryBudgets::default()));
        for bad in ["91", "91=x", "abc=5", "0=5", "1000=5"] {
            assert!(bad.parse::<CountryBudgets>().is_err(), "{bad}");
        }
    }
}
