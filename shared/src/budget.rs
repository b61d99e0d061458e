//! WATI's and Meta's limits, as settings both processes read: the workers keep to them
//! together, and the api admits only what they can hand to WATI within a code's life.
//!
//! WATI counts calls (30, 60 or 100 per 10 s by plan); Meta counts messages per
//! sending number (80 per second by default, up to 1,000). A v3 call carries up to
//! `WATI_BATCH_MAX` recipients; a v1 call carries one.

use std::time::Duration;

use crate::config_error::ConfigError;
use crate::senders::Senders;

/// WATI's call limit is per 10 seconds.
pub const CALL_WINDOW: Duration = Duration::from_secs(10);
/// Calls are spaced as if the window were this much longer, so that a call delayed on
/// its way to WATI cannot make the next window's calls arrive inside this one.
pub const CALL_WINDOW_SLACK: Duration = Duration::from_millis(250);
/// Meta's throughput is per second.
pub const MESSAGE_WINDOW: Duration = Duration::from_secs(1);
/// Each number's messages are counted as if Meta's second were this much longer, so that
/// calls that leave a second apart and travel to WATI at different speeds do not arrive
/// within one second. (Measured without it at 1,000 a second: up to 1,344 recipients in
/// a 1,000 ms window at WATI's side, never more than 1,000 in 990 ms, so calls arrived
/// at most about 10 ms closer than they left.) The call budget's 250 ms would hold a
/// number to 0.8 of its rate; 50 ms holds it to 0.95.
pub const MESSAGE_WINDOW_SLACK: Duration = Duration::from_millis(50);
/// The most recipients WATI takes in one v3 call.
pub const WATI_MAX_RECIPIENTS: u32 = 10_000;

/// Which WATI endpoint sends codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WatiApiVersion {
    /// `sendTemplateMessage`: one call per code.
    V1,
    /// `messageTemplates/send`: many recipients per call.
    V3,
}

/// The budgets' settings, flattened into both processes' arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct BudgetArgs {
    /// WATI endpoint: `v3` (batched messageTemplates/send) or `v1` (one sendTemplateMessage
    /// call per code, for tenants without v3).
    #[arg(long, env = "WATI_API_VERSION", value_enum, default_value = "v3")]
    pub wati_api_version: WatiApiVersion,
    /// WATI calls per 10 s for all workers together (WATI's plan limit: 30, 60 or 100);
    /// 0 turns the limit off.
    #[arg(long, env = "WATI_CALLS_PER_10S", default_value_t = 30)]
    pub wati_calls_per_10s: u32,
    /// Meta's throughput per sending number, messages per second (80 by default, up to
    /// 1,000 after Meta's upgrade; 0: no limit): one rate for every number, and
    /// `number=rate` for a number with its own, comma-separated (`1000,15550002222=80`).
    #[arg(long, env = "WHATSAPP_MESSAGES_PER_SECOND", default_value = "80")]
    pub whatsapp_messages_per_second: String,
    /// The pool of WhatsApp numbers codes go out from (`channel_number`), comma-separated:
    /// each call goes from one, each number within its own rate, and a number in trouble
    /// is paused. Unset: `WATI_CHANNEL_NUMBER`.
    #[arg(long, env = "WATI_CHANNEL_NUMBERS")]
    pub wati_channel_numbers: Option<String>,
    /// The one WhatsApp number codes go out from (`channel_number`, v3 and v1); WATI's
    /// default channel if neither this nor `WATI_CHANNEL_NUMBERS` is set.
    #[arg(long, env = "WATI_CHANNEL_NUMBER")]
    pub wati_channel_number: Option<String>,
    /// Most recipients in one v3 call (WATI takes up to 10,000).
    #[arg(long, env = "WATI_BATCH_MAX", default_value_t = 1000)]
    pub wati_batch_max: u32,
    /// A sending number's first pause when Meta limits it (131048, 130429, …) or its
    /// messages fail in a burst, in seconds; each pause in a row doubles, up to 15
    /// minutes. Then it sends one probe at a time until one is delivered.
    #[arg(long, env = "SENDER_PAUSE_SECONDS", default_value_t = 30)]
    pub sender_pause_seconds: u64,
}

/// The budgets, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budgets {
    pub api_version: WatiApiVersion,
    /// 0 is no limit.
    pub calls_per_10s: u32,
    /// The sending numbers, each with its messages per second.
    pub senders: Senders,
    /// Recipients of one call: `WATI_BATCH_MAX` for v3, 1 for v1.
    pub recipients_per_call: u32,
    /// A sending number's first pause (`SENDER_PAUSE_SECONDS`).
    pub sender_pause: Duration,
}

/// How many sends may wait for WATI at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Both budgets are off: nothing limits how fast sends are handed over.
    Unlimited,
    /// At most `sends` waiting; they are all handed over within `usable`.
    Sends { sends: u64, usable: Duration },
}

impl BudgetArgs {
    /// The sending numbers and their rates, checked.
    pub fn senders(&self) -> Result<Senders, ConfigError> {
        Senders::parse(
            self.wati_channel_numbers.as_deref(),
            self.wati_channel_number.as_deref(),
            &self.whatsapp_messages_per_second,
        )
    }

    pub fn validate(self) -> Result<Budgets, ConfigError> {
        let senders = self.senders()?;
        if !(1..=WATI_MAX_RECIPIENTS).contains(&self.wati_batch_max) {
            return Err(ConfigError::Invalid {
                name: "WATI_BATCH_MAX",
                problem: "must be between 1 and 10000",
            });
        }
        Ok(Budgets {
            api_version: self.wati_api_version,
            calls_per_10s: self.wati_calls_per_10s,
            senders,
            recipients_per_call: match self.wati_api_version {
                WatiApiVersion::V1 => 1,
                WatiApiVersion::V3 => self.wati_batch_max,
            },
            sender_pause: Duration::from_secs(self.sender_pause_seconds.max(1)),
        })
    }
}

impl Budgets {
    /// The shortest gap between two calls, over all workers; `None` when calls are not
    /// limited. Evenly spaced calls keep any 10 s span to `calls_per_10s` calls.
    pub fn call_interval(&self) -> Option<Duration> {
        (self.calls_per_10s > 0).then(|| (CALL_WINDOW + CALL_WINDOW_SLACK) / self.calls_per_10s)
    }

    /// How many sends can wait for WATI so that each is handed over before a code of
    /// lifetime `ttl` expires.
    ///
    /// A safety margin of a twentieth of the life (at least a second) is kept back.
    /// Within the rest (`usable`): calls are evenly spaced, and the slot just before may
    /// have been taken (one fewer); a v3 call is assumed only half full, because calls
    /// leave as soon as their slot opens with whatever is waiting (a lone job goes out
    /// at once, and each worker's last call of a burst is partial). Messages sent in the
    /// last second still count against the next one (one second fewer).
    pub fn capacity(&self, ttl: Duration) -> Capacity {
        let usable = usable(ttl);
        let by_calls = self.calls_in(usable).map(|calls| {
            let per_call = match self.api_version {
                WatiApiVersion::V1 => 1,
                WatiApiVersion::V3 => u64::from(self.recipients_per_call / 2).max(1),
            };
            calls * per_call
        });
        let by_messages = self.senders.messages_per_second().map(|per_second| {
            let seconds = usable.saturating_sub(MESSAGE_WINDOW).as_secs_f64();
            (per_second as f64 * seconds / counted_second().as_secs_f64()).floor() as u64
        });
        match (by_calls, by_messages) {
            (None, None) => Capacity::Unlimited,
            (calls, messages) => Capacity::Sends {
                sends: calls.unwrap_or(u64::MAX).min(messages.unwrap_or(u64::MAX)),
                usable,
            },
        }
    }
}

impl Budgets {
    /// These budgets with the senders as `now` sees them (`None`: paused, left out), or
    /// `None` when every sender is paused.
    pub fn with_senders(
        &self,
        now: impl Fn(&crate::senders::Sender) -> Option<crate::senders::Sender>,
    ) -> Option<Self> {
        Some(Self {
            senders: self.senders.only(now)?,
            ..self.clone()
        })
    }
}

/// How long each number's messages count against its rate: Meta's second and its slack.
pub fn counted_second() -> Duration {
    MESSAGE_WINDOW + MESSAGE_WINDOW_SLACK
}

/// What of a code's life the budgets count on: all but a twentieth (at least a second).
fn usable(ttl: Duration) -> Duration {
    let margin = (ttl / 20).max(Duration::from_secs(1));
    ttl.saturating_sub(margin)
}

impl Budgets {
    /// Calls that can leave within `usable`: evenly spaced, the slot just before maybe
    /// taken; `None` when calls are not limited.
    fn calls_in(&self, usable: Duration) -> Option<u64> {
        self.call_interval()
            .map(|interval| (usable.as_micros() / interval.as_micros()).saturating_sub(1) as u64)
    }

    /// The calls of a code's life that admission leaves for partly filled ones: all of
    /// them, less those its admitted sends would take in full calls. A v3 burst takes one
    /// partly filled call per worker and template (each worker's last call of each
    /// template), so this bounds workers × templates. `None` when calls are not limited
    /// or each carries one send (v1).
    pub fn partial_call_room(&self, ttl: Duration) -> Option<u64> {
        if self.api_version == WatiApiVersion::V1 {
            return None;
        }
        let calls = self.calls_in(usable(ttl))?;
        let admitted = match self.capacity(ttl) {
            Capacity::Sends { sends, .. } => sends,
            Capacity::Unlimited => return None,
        };
        Some(calls.saturating_sub(admitted.div_ceil(u64::from(self.recipients_per_call))))
    }
}

impl Capacity {
    /// Refuses a configuration in which not one send could be handed over in time.
    pub fn check(self) -> Result<Self, ConfigError> {
        match self {
            Capacity::Sends { sends: 0, .. } => Err(ConfigError::Invalid {
                name: "OTP_TTL_SECONDS",
                problem: "is too short for the WATI budgets: no send could reach WATI before it expires",
            }),
            other => Ok(other),
        }
    }

    /// How long until a send could be admitted with `pending` waiting: the time the
    /// budgets take to hand over the excess. At least a second.
    pub fn retry_after(self, pending: u64) -> Duration {
        let wait = match self {
            Capacity::Unlimited => Duration::ZERO,
            Capacity::Sends { sends, usable } => {
                let excess = (pending + 1).saturating_sub(sends);
                usable.mul_f64(excess as f64 / sends.max(1) as f64)
            }
        };
        wait.max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(version: WatiApiVersion, calls: u32, messages: u32, batch: u32) -> Budgets {
        BudgetArgs {
            wati_api_version: version,
            wati_calls_per_10s: calls,
            whatsapp_messages_per_second: messages.to_string(),
            wati_channel_numbers: None,
            wati_channel_number: None,
            wati_batch_max: batch,
            sender_pause_seconds: 30,
        }
        .validate()
        .expect("valid")
    }

    fn sends(capacity: Capacity) -> u64 {
        match capacity {
            Capacity::Sends { sends, .. } => sends,
            Capacity::Unlimited => panic!("unlimited"),
        }
    }

    #[test]
    fn calls_are_spaced_so_no_ten_seconds_hold_more_than_the_limit() {
        let b = budgets(WatiApiVersion::V3, 100, 0, 1000);
        let interval = b.call_interval().expect("limited");
        assert_eq!(interval, Duration::from_micros(102_500));
        // 101 calls at that spacing span more than 10 s.
        assert!(interval * 100 > CALL_WINDOW);
        assert_eq!(
            budgets(WatiApiVersion::V3, 0, 80, 1000).call_interval(),
            None
        );
    }

    #[test]
    fn messages_bind_a_v3_burst() {
        // 300 s codes: 15 s margin, 285 s usable, 284 s of 80 messages, each second
        // counted as 1.05 s.
        let b = budgets(WatiApiVersion::V3, 30, 80, 1000);
        assert_eq!(sends(b.capacity(Duration::from_secs(300))), 21_638);
        let b = budgets(WatiApiVersion::V3, 100, 10, 1000);
        assert_eq!(sends(b.capacity(Duration::from_secs(10))), 76);
    }

    #[test]
    fn a_pool_admits_what_its_healthy_numbers_send() {
        let mut b = budgets(WatiApiVersion::V3, 100, 1000, 1000);
        b.senders = Senders::parse(Some("111,222,333,444"), None, "1000").expect("valid");
        let four = sends(b.capacity(Duration::from_secs(300)));
        assert_eq!(four, 4 * 270_476);
        let three = b
            .with_senders(|s| (s.name() != "222").then(|| s.clone()))
            .expect("three left");
        assert_eq!(sends(three.capacity(Duration::from_secs(300))), 3 * 270_476);
        assert_eq!(b.with_senders(|_| None), None);
    }

    #[test]
    fn calls_bind_v1_and_small_batches() {
        // v1, 20 calls per 10 s: one every 512.5 ms; 6 s codes leave 5 s: 9 slots, one
        // of which may be taken.
        let b = budgets(WatiApiVersion::V1, 20, 0, 1000);
        assert_eq!(sends(b.capacity(Duration::from_secs(6))), 8);
        // v3 with 10 per call is counted as 5 per call.
        let b = budgets(WatiApiVersion::V3, 20, 0, 10);
        assert_eq!(sends(b.capacity(Duration::from_secs(6))), 40);
    }

    #[test]
    fn the_room_for_partly_filled_calls_is_what_full_calls_leave() {
        // 30 calls per 10 s, 300 s codes: 833 calls; messages bind at 21,638 sends, 22
        // full calls of 1,000.
        let b = budgets(WatiApiVersion::V3, 30, 80, 1000);
        assert_eq!(
            b.partial_call_room(Duration::from_secs(300)),
            Some(833 - 22)
        );
        // When calls bind, about half of them are left (the half-full count): 10 s codes,
        // 9 s usable, 7 calls, 28 sends admitted, 4 full calls of 8.
        let b = budgets(WatiApiVersion::V3, 10, 0, 8);
        assert_eq!(b.partial_call_room(Duration::from_secs(10)), Some(7 - 4));
        assert_eq!(
            budgets(WatiApiVersion::V1, 30, 80, 1000).partial_call_room(Duration::from_secs(300)),
            None
        );
        assert_eq!(
            budgets(WatiApiVersion::V3, 0, 80, 1000).partial_call_room(Duration::from_secs(300)),
            None
        );
    }

    #[test]
    fn no_budget_means_no_limit_and_a_too_short_life_is_refused() {
        let b = budgets(WatiApiVersion::V3, 0, 0, 1000);
        assert_eq!(b.capacity(Duration::from_secs(300)), Capacity::Unlimited);
        let b = budgets(WatiApiVersion::V1, 30, 0, 1000);
        assert!(b.capacity(Duration::from_secs(1)).check().is_err());
        assert!(b.capacity(Duration::from_secs(300)).check().is_ok());
    }

    #[test]
    fn the_wait_grows_with_the_excess() {
        let capacity = Capacity::Sends {
            sends: 100,
            usable: Duration::from_secs(10),
        };
        assert_eq!(capacity.retry_after(100), Duration::from_millis(1000));
        assert_eq!(capacity.retry_after(150), Duration::from_millis(5100));
        assert_eq!(capacity.retry_after(0), Duration::from_secs(1));
    }

    #[test]
    fn the_batch_size_is_bounded_like_watis() {
        for bad in [0, 10_001] {
            let args = BudgetArgs {
                wati_api_version: WatiApiVersion::V3,
                wati_calls_per_10s: 30,
                whatsapp_messages_per_second: "80".into(),
                wati_channel_numbers: None,
                wati_channel_number: None,
                wati_batch_max: bad,
                sender_pause_seconds: 30,
            };
            assert!(args.validate().is_err(), "{bad}");
        }
        assert_eq!(
            budgets(WatiApiVersion::V1, 30, 80, 1000).recipients_per_call,
            1
        );
    }
}
