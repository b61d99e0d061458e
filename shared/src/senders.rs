//! The pool of sending numbers codes go out from (`WATI_CHANNEL_NUMBERS`, or the
//! one-number `WATI_CHANNEL_NUMBER`), each held to its own Meta rate
//! (`WHATSAPP_MESSAGES_PER_SECOND`: one rate for all, or `number=rate` pairs). Meta counts
//! messages per number, so each number has its own message budget; WATI counts calls per
//! tenant, so the call budget is shared by all.

use crate::config_error::ConfigError;

/// The name a sender without `channel_number` (WATI's default channel) goes by in
/// metrics and in Redis.
pub const DEFAULT_CHANNEL: &str = "default";

/// One sending number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// The call's `channel_number`; `None`: WATI's default channel.
    pub number: Option<String>,
    /// Meta's rate for this number, messages per second (0: no limit).
    pub messages_per_second: u32,
}

impl Sender {
    /// How metrics and Redis name it: its number, or [`DEFAULT_CHANNEL`].
    pub fn name(&self) -> &str {
        self.number.as_deref().unwrap_or(DEFAULT_CHANNEL)
    }
}

/// The number a call went from, and whether it was a probe of a number back from a
/// pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFrom {
    pub sender: Sender,
    pub probe: bool,
}

/// The pool: at least one sender, each named once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Senders(Vec<Sender>);

const RATES: &str = "WHATSAPP_MESSAGES_PER_SECOND";

impl Senders {
    /// WATI's default channel alone, at `messages_per_second`.
    pub fn default_channel(messages_per_second: u32) -> Self {
        Self(vec![Sender {
            number: None,
            messages_per_second,
        }])
    }

    /// `numbers`, each at `messages_per_second`.
    pub fn numbers(numbers: &[&str], messages_per_second: u32) -> Self {
        Self(
            numbers
                .iter()
                .map(|n| Sender {
                    number: Some((*n).to_owned()),
                    messages_per_second,
                })
                .collect(),
        )
    }

    /// Reads the settings: `pool` (`WATI_CHANNEL_NUMBERS`, comma-separated) or `one`
    /// (`WATI_CHANNEL_NUMBER`), not both; without either, WATI's default channel. `rates`
    /// is a bare rate for every number not named (at most one) and `number=rate` pairs;
    /// every number needs a rate, and every pair must name a number of the pool.
    pub fn parse(pool: Option<&str>, one: Option<&str>, rates: &str) -> Result<Self, ConfigError> {
        let pool = pool.map(str::trim).filter(|p| !p.is_empty());
        let one = one.map(str::trim).filter(|o| !o.is_empty());
        let numbers: Vec<Option<String>> = match (pool, one) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "WATI_CHANNEL_NUMBERS",
                    problem: "and WATI_CHANNEL_NUMBER are both set: set one (WATI_CHANNEL_NUMBERS may list one number)",
                });
            }
            (Some(pool), None) => pool.split(',').map(|n| Some(n.trim().to_owned())).collect(),
            (None, Some(one)) => vec![Some(one.to_owned())],
            (None, None) => vec![None],
        };
        for (i, number) in numbers.iter().enumerate() {
            let Some(number) = number else { continue };
            if number.is_empty() || number.contains('=') {
                return Err(ConfigError::Invalid {
                    name: "WATI_CHANNEL_NUMBERS",
                    problem: "has an empty entry or one with '=' (numbers, comma-separated)",
                });
            }
            if number == DEFAULT_CHANNEL {
                return Err(ConfigError::Invalid {
                    name: "WATI_CHANNEL_NUMBERS",
                    problem: "names `default`, the name of WATI's default channel: leave the setting unset for it",
                });
            }
            if numbers[..i].iter().any(|n| n.as_ref() == Some(number)) {
                return Err(ConfigError::Invalid {
                    name: "WATI_CHANNEL_NUMBERS",
                    problem: "names a number twice",
                });
            }
        }
        let (bare, pairs) = parse_rates(rates)?;
        for (named, _) in &pairs {
            if !numbers.iter().any(|n| n.as_deref() == Some(named.as_str())) {
                return Err(ConfigError::Invalid {
                    name: RATES,
                    problem: "gives a rate to a number that is not in WATI_CHANNEL_NUMBERS",
                });
            }
        }
        let senders = numbers
            .into_iter()
            .map(|number| {
                let own = number
                    .as_deref()
                    .and_then(|n| pairs.iter().find(|(named, _)| named == n))
                    .map(|(_, rate)| *rate);
                let messages_per_second = own.or(bare).ok_or(ConfigError::Invalid {
                    name: RATES,
                    problem: "gives no rate to a number of the pool: add `number=rate`, or one bare rate for all",
                })?;
                Ok(Sender {
                    number,
                    messages_per_second,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(senders))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sender> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: a pool holds at least one sender.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `i`th sender.
    pub fn get(&self, i: usize) -> Option<&Sender> {
        self.0.get(i)
    }

    /// The pool's messages per second; `None` when a number has no limit.
    pub fn messages_per_second(&self) -> Option<u64> {
        self.0
            .iter()
            .map(|s| (s.messages_per_second > 0).then_some(u64::from(s.messages_per_second)))
            .sum()
    }

    /// The senders as `keep` sees them (`None` leaves one out), or `None` when it
    /// keeps none.
    pub fn only(&self, keep: impl Fn(&Sender) -> Option<Sender>) -> Option<Self> {
        let kept: Vec<Sender> = self.0.iter().filter_map(keep).collect();
        (!kept.is_empty()).then_some(Self(kept))
    }
}

/// A bare rate (at most one) and the `number=rate` pairs.
type Rates = (Option<u32>, Vec<(String, u32)>);

fn parse_rates(setting: &str) -> Result<Rates, ConfigError> {
    let not_a_rate = |_| ConfigError::Invalid {
        name: RATES,
        problem: "must be a rate (messages per second, 0: no limit), or `number=rate` pairs, comma-separated",
    };
    let mut bare = None;
    let mut pairs: Vec<(String, u32)> = Vec::new();
    for item in setting.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((number, rate)) => {
                let number = number.trim();
                let rate = rate.trim().parse().map_err(not_a_rate)?;
                if number.is_empty() || pairs.iter().any(|(n, _)| n == number) {
                    return Err(ConfigError::Invalid {
                        name: RATES,
                        problem: "has a pair without a number, or names a number twice",
                    });
                }
                pairs.push((number.to_owned(), rate));
            }
            None if bare.is_none() => bare = Some(item.parse().map_err(not_a_rate)?),
            None => {
                return Err(ConfigError::Invalid {
                    name: RATES,
                    problem: "has two bare rates: one for every number, and `number=rate` for others",
                });
            }
        }
    }
    Ok((bare, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(senders: &Senders) -> Vec<(&str, u32)> {
        senders
            .iter()
            .map(|s| (s.name(), s.messages_per_second))
            .collect()
    }

    #[test]
    fn one_rate_serves_every_number_and_pairs_name_their_own() {
        let pool = Senders::parse(Some("111, 222,333"), None, "1000,222=80").expect("valid");
        assert_eq!(rates(&pool), [("111", 1000), ("222", 80), ("333", 1000)]);
        assert_eq!(pool.messages_per_second(), Some(2080));
        let pool = Senders::parse(Some("111,222"), None, "111=80, 222=1000").expect("valid");
        assert_eq!(rates(&pool), [("111", 80), ("222", 1000)]);
    }

    #[test]
    fn the_one_number_form_and_the_default_channel_still_work() {
        let one = Senders::parse(None, Some("15550001111"), "80").expect("valid");
        assert_eq!(rates(&one), [("15550001111", 80)]);
        assert_eq!(
            one.get(0).and_then(|s| s.number.as_deref()),
            Some("15550001111")
        );
        let default = Senders::parse(None, Some("  "), "80").expect("valid");
        assert_eq!(default, Senders::default_channel(80));
        assert_eq!(default.get(0).map(Sender::name), Some(DEFAULT_CHANNEL));
    }

    #[test]
    fn a_number_without_limit_makes_the_pool_unlimited() {
        let pool = Senders::parse(Some("111,222"), None, "80,222=0").expect("valid");
        assert_eq!(pool.messages_per_second(), None);
    }

    #[test]
    fn mistakes_are_refused_naming_the_setting() {
        for (pool, one, rates, setting) in [
            (Some("111"), Some("222"), "80", "WATI_CHANNEL_NUMBERS"),
            (Some("111,,222"), None, "80", "WATI_CHANNEL_NUMBERS"),
            (Some("111,111"), None, "80", "WATI_CHANNEL_NUMBERS"),
            (Some("default"), None, "80", "WATI_CHANNEL_NUMBERS"),
            (Some("111,222"), None, "111=80", RATES),
            (Some("111"), None, "80,999=10", RATES),
            (Some("111"), None, "80,90", RATES),
            (Some("111"), None, "fast", RATES),
            (Some("111"), None, "111=80,111=90", RATES),
        ] {
            let refused = Senders::parse(pool, one, rates).expect_err(rates);
            assert!(
                refused.to_string().starts_with(setting),
                "{pool:?} {rates:?}: {refused}"
            );
        }
    }

    #[test]
    fn only_keeps_what_it_is_asked_to_or_says_nothing_is_left() {
        let pool = Senders::numbers(&["111", "222"], 1000);
        let kept = pool
            .only(|s| (s.name() == "222").then(|| s.clone()))
            .expect("one left");
        assert_eq!(rates(&kept), [("222", 1000)]);
        assert_eq!(pool.only(|_| None), None);
    }
}
