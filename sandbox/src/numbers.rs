//! The tenant's sending numbers: Meta's throughput per number, trouble on one number, and
//! each number's counts.
//!
//! What the documentation says, and what the sandbox makes of it:
//!
//! - A v3 send names its sender in `channel_number`, "the channel name or number from
//!   which the template messages will be sent (null for default channel)" (docs.wati.io,
//!   "Send template messages", `POST /api/ext/v3/messageTemplates/send`). The sandbox
//!   reads the same field from a v1 body, as it does for templates. Calls without one
//!   count under [`DEFAULT_CHANNEL`]. (WATI's support article 11463225, in its newer
//!   versions, calls `channel_number` required, "with country code, without +"; the
//!   reference allows null, and the sandbox follows the reference.)
//! - "For each registered business phone number, Cloud API supports up to 80 messages per
//!   second (mps) by default, and up to 1,000 mps by automatic upgrade. [...] If you
//!   attempt to send more messages than your current throughput level allows, the API
//!   will return error code 130429 until you are within your allowed level again"
//!   (developers.facebook.com, WhatsApp Business Platform, "Throughput"). Meta's error
//!   table: 130429 "Rate limit hit", "Cloud API message throughput has been reached."
//!   The rate is per number: [`MessageRates`], 80 by default in the binary. How the
//!   1 s is counted is Meta's secret; the sandbox holds every number to any 1 s window
//!   of its calls' arrivals (`throughput`).
//! - 131048 "Spam rate limit hit": "Message failed to send because there are
//!   restrictions on how many messages can be sent from this phone number. This may be
//!   because too many previous messages were blocked or flagged as spam" (Meta's error
//!   table). A number can be marked degraded from a given moment; its messages from
//!   then on fail with 131048 until it is undegraded.
//! - WATI's answer to a send only says it queued the message ("Status code 200 means the
//!   message was accepted by WATI, not delivered yet. To know if a message is failed,
//!   listen to the Template Message Failed webhook", the same page), and Meta reports
//!   errors "either synchronously [...] or asynchronously via Webhook". So the call
//!   accepts the recipient, and its failure comes as WATI's `templateMessageFailed`
//!   event with Meta's code in `failedCode` and its title in `failedDetail`, as
//!   docs.wati.io "Template Message FAILED" shows for 131026 ("Message undeliverable").
//!   WATI does not document which of Meta's errors it forwards this way.
//!
//! Every accepted message counts (a message Meta fails for its parameters, 132000, was
//! still sent to Meta). A failure for the number wins over whatever the recipient's
//! script or fate would have brought: Meta never let it through.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::receipt::ReceiptPlan;
use crate::record::Sent;
use crate::throughput::Throughput;

/// The name the sandbox counts a call without `channel_number` under: the tenant's
/// default channel.
pub const DEFAULT_CHANNEL: &str = "default";
/// Meta's throughput for a business phone number before its automatic upgrade.
pub const META_MESSAGES_PER_SECOND: u32 = 80;

/// Meta's error for a number past its throughput, and its title.
pub const THROUGHPUT_CODE: &str = "130429";
const THROUGHPUT_DETAIL: &str = "Rate limit hit";
/// Meta's error for a number restricted for spam, and its title.
pub const SPAM_RATE_LIMIT_CODE: &str = "131048";
const SPAM_RATE_LIMIT_DETAIL: &str = "Spam rate limit hit";

/// Messages per second each sending number may send; 0 is no limit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRates {
    /// Every number not named in `numbers` (the default channel included).
    pub default: u32,
    /// Numbers with a rate of their own (`channel_number`, or [`DEFAULT_CHANNEL`]).
    #[serde(default)]
    pub numbers: BTreeMap<String, u32>,
}

impl Default for MessageRates {
    /// Meta's default throughput, 80 for every number.
    fn default() -> Self {
        Self::every_number(META_MESSAGES_PER_SECOND)
    }
}

impl MessageRates {
    /// `per_second` for every number.
    pub fn every_number(per_second: u32) -> Self {
        Self {
            default: per_second,
            numbers: BTreeMap::new(),
        }
    }

    /// No limit on any number.
    pub fn unlimited() -> Self {
        Self::every_number(0)
    }

    /// The rate of `number` (`channel_number`, or [`DEFAULT_CHANNEL`]).
    pub fn of(&self, number: &str) -> u32 {
        self.numbers.get(number).copied().unwrap_or(self.default)
    }

    /// Reads `SANDBOX_MESSAGES_PER_SECOND`: comma-separated, a bare `rate` for every
    /// number not named (at most one; 80 without it) and `number=rate` for one number,
    /// e.g. `80,15550001111=1000,default=1000`.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut rates = Self::default();
        let mut default_seen = false;
        for item in setting.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let rate_of = |text: &str| {
                text.trim().parse::<u32>().map_err(|_| {
                    format!("SANDBOX_MESSAGES_PER_SECOND entry {item:?}: {text:?} is not a rate")
                })
            };
            match item.split_once('=') {
                Some((number, rate)) if !number.trim().is_empty() => {
                    rates
                        .numbers
                        .insert(number.trim().to_owned(), rate_of(rate)?);
                }
                Some(_) => {
                    return Err(format!(
                        "SANDBOX_MESSAGES_PER_SECOND entry {item:?} names no number"
                    ));
                }
                None if default_seen => {
                    return Err(format!(
                        "SANDBOX_MESSAGES_PER_SECOND has more than one rate for every number ({item:?})"
                    ));
                }
                None => {
                    rates.default = rate_of(item)?;
                    default_seen = true;
                }
            }
        }
        Ok(rates)
    }
}

/// One sending number's messages since start or reset, by what became of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberStats {
    /// Messages WATI accepted from this number: the sum of the three others.
    pub accepted: u64,
    /// Messages that reach the phone (their receipts say delivered, then read).
    pub delivered: u64,
    /// Messages that fail, by Meta's code (`templateMessageFailed`'s `failedCode`).
    pub failed: BTreeMap<String, u64>,
    /// Messages that get no receipt at all (a script's or the population's).
    pub no_receipt: u64,
}

impl NumberStats {
    fn count(&mut self, plan: &ReceiptPlan) {
        self.accepted += 1;
        match plan {
            ReceiptPlan::Read => self.delivered += 1,
            ReceiptPlan::Failed { code, .. } => *self.failed.entry(code.clone()).or_default() += 1,
            ReceiptPlan::Silent => self.no_receipt += 1,
        }
    }
}

/// When a number's trouble began.
#[derive(Clone, Copy, Debug)]
struct Degraded {
    from: Instant,
    /// `from` on the wall clock, to report.
    from_ms: u64,
}

/// One number's traffic since start or reset.
#[derive(Debug, Default)]
struct Traffic {
    throughput: Throughput,
    stats: NumberStats,
}

/// The numbers' settings (kept across a reset) and their traffic (forgotten by it).
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    rates: MessageRates,
    degraded: BTreeMap<String, Degraded>,
    traffic: HashMap<String, Traffic>,
}

impl Numbers {
    pub(crate) fn new(rates: MessageRates) -> Self {
        Self {
            rates,
            ..Self::default()
        }
    }

    /// The same settings, and no traffic.
    pub(crate) fn forget_traffic(&mut self) -> Self {
        Self {
            rates: std::mem::take(&mut self.rates),
            degraded: std::mem::take(&mut self.degraded),
            traffic: HashMap::new(),
        }
    }

    pub(crate) fn rates(&self) -> &MessageRates {
        &self.rates
    }

    pub(crate) fn set_rates(&mut self, rates: MessageRates) {
        self.rates = rates;
    }

    pub(crate) fn set_rate(&mut self, number: &str, per_second: u32) {
        self.rates.numbers.insert(number.to_owned(), per_second);
    }

    pub(crate) fn degrade(&mut self, number: &str, from: Instant, from_ms: u64) {
        self.degraded
            .insert(number.to_owned(), Degraded { from, from_ms });
    }

    pub(crate) fn undegrade(&mut self, number: &str) {
        self.degraded.remove(number);
    }

    /// Each degraded number, with the Unix time in ms its trouble began.
    pub(crate) fn degraded(&self) -> BTreeMap<String, u64> {
        self.degraded
            .iter()
            .map(|(number, d)| (number.clone(), d.from_ms))
            .collect()
    }

    pub(crate) fn stats(&self) -> BTreeMap<String, NumberStats> {
        self.traffic
            .iter()
            .map(|(number, t)| (number.clone(), t.stats.clone()))
            .collect()
    }

    /// Puts a call's accepted messages through its number, in recipient order: from a
    /// degraded number they fail with 131048; past the number's rate, with 130429;
    /// either way they no longer reach the phone. Then counts them all. `channel` is
    /// the call's `channel_number`, `arrived` its arrival, `now` the clock.
    pub(crate) fn send(
        &mut self,
        channel: Option<&str>,
        arrived: Instant,
        now: Instant,
        sent: &mut [Sent],
    ) {
        let number = channel.unwrap_or(DEFAULT_CHANNEL);
        let rate = self.rates.of(number);
        let degraded = self.degraded.get(number).is_some_and(|d| arrived >= d.from);
        let traffic = self.traffic.entry(number.to_owned()).or_default();
        let mut accepted: Vec<&mut Sent> = sent.iter_mut().filter(|s| s.accepted).collect();
        let let_through = if degraded {
            0
        } else {
            traffic.throughput.take(arrived, accepted.len(), rate, now)
        };
        let (code, detail) = if degraded {
            (SPAM_RATE_LIMIT_CODE, SPAM_RATE_LIMIT_DETAIL)
        } else {
            (THROUGHPUT_CODE, THROUGHPUT_DETAIL)
        };
        for refused in accepted.iter_mut().skip(let_through) {
            refused.reaches_phone = false;
            refused.receipts = ReceiptPlan::Failed {
                code: code.to_owned(),
                detail: detail.to_owned(),
            };
        }
        for message in &accepted {
            traffic.stats.count(&message.receipts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_a_rate_for_all_and_rates_of_their_own() {
        let rates = MessageRates::parse("1000, 15550001111=80 ,default=20").expect("reads");
        assert_eq!(rates.of("15550002222"), 1_000);
        assert_eq!(rates.of("15550001111"), 80);
        assert_eq!(rates.of(DEFAULT_CHANNEL), 20);
        let only_one = MessageRates::parse("15550001111=5").expect("reads");
        assert_eq!(only_one.of("15550002222"), META_MESSAGES_PER_SECOND);
        assert_eq!(
            MessageRates::parse("0").expect("reads"),
            MessageRates::unlimited()
        );
        assert_eq!(
            MessageRates::parse("").expect("reads"),
            MessageRates::default()
        );
    }

    #[test]
    fn the_setting_refuses_what_does_not_read() {
        for bad in ["fast", "80,100", "=80", "155=", "155=-1"] {
            assert!(MessageRates::parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
