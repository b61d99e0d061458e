//! The sending numbers' health, shared by every process through Redis. A receipt that
//! says a number is in trouble (Meta's throughput or spam limit, a number blocked, or a
//! burst of failures) pauses it, with a back-off; when the pause ends it sends probes
//! until a delivery receipt for one clears it (`claim_budget.lua` keeps to this). The
//! api reads the states to admit only what the healthy numbers can send.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, Lua, PROBE_DELIVERED, SENDER_TROUBLE, ScriptArgs};
use super::words::senders as word;
use crate::senders::Senders;

/// A number's first pause; each pause in a row doubles it.
pub const FIRST_PAUSE: Duration = Duration::from_secs(30);
/// The longest pause.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(15 * 60);
/// Failures of one number within this window that make a burst.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);
/// Fewest failures that make a burst, whatever the number's rate.
const MIN_BURST: u32 = 50;

/// Meta's errors that say the number, not the recipient, is in trouble: 130429
/// throughput reached, 131048 spam rate limit, 131031 account locked, 368 temporarily
/// blocked for policy violations.
const NUMBER_TROUBLE_CODES: [&str; 4] = ["130429", "131048", "131031", "368"];

/// Meta's errors that are the recipient's, not the number's: a burst of them (anyone can
/// ask codes for numbers not on WhatsApp) says nothing about the number. 131026
/// undeliverable, 131021 sender is recipient, 131047 re-engagement, 131049 and 131050
/// marketing limits, 131051 unsupported type, 131056 pair rate limit, 130472 Meta's
/// experiment.
const RECIPIENT_CODES: [&str; 8] = [
    "131026", "131021", "131047", "131049", "131050", "131051", "131056", "130472",
];

/// What a failure receipt says about the number it went from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The number itself is limited or blocked: pause it now.
    Limit,
    /// One more failure: pause it at a burst.
    Failure,
    /// The recipient's trouble: nothing about the number.
    Recipient,
}

impl Trouble {
    /// What Meta's error `code` says about the number.
    pub fn of_code(code: &str) -> Self {
        if NUMBER_TROUBLE_CODES.contains(&code) {
            Trouble::Limit
        } else if RECIPIENT_CODES.contains(&code) {
            Trouble::Recipient
        } else {
            Trouble::Failure
        }
    }

    /// How sender_trouble.lua and the pauses counter's `trouble` label name it.
    pub fn label(self) -> &'static str {
        match self {
            Trouble::Limit => word::LIMIT,
            Trouble::Failure | Trouble::Recipient => word::FAILURE,
        }
    }
}

/// What a trouble report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    /// The number is paused for this long.
    Paused(Duration),
    /// A failure counted towards a burst.
    Counted,
    /// The message left before the number's last pause, or while it lasts.
    Stale,
}

impl FromRedisValue for Reported {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let (kind, amount): (String, u64) = FromRedisValue::from_redis_value(v)?;
        match kind.as_str() {
            word::PAUSED => Ok(Reported::Paused(Duration::from_millis(amount))),
            word::COUNTED => Ok(Reported::Counted),
            word::STALE => Ok(Reported::Stale),
            other => Err(format!("sender_trouble.lua answered {other:?}").into()),
        }
    }
}

/// sender_trouble.lua's arguments.
pub(crate) struct SenderTroubleArgs<'a> {
    pub sender: &'a str,
    pub kind: Trouble,
    /// When the failed message left for WATI (Unix ms).
    pub sent_at_ms: u64,
    pub first_pause: Duration,
    pub longest_pause: Duration,
    /// Failures within `burst_window` that pause the number.
    pub burst: u32,
    pub burst_window: Duration,
}

impl ScriptArgs for SenderTroubleArgs<'_> {
    fn script() -> &'static Lua {
        &SENDER_TROUBLE
    }

    fn write(&self, argv: &mut Argv) {
        let Self {
            sender,
            kind,
            sent_at_ms,
            first_pause,
            longest_pause,
            burst,
            burst_window,
        } = self;
        argv.push(*sender)
            .push(kind.label())
            .push(*sent_at_ms)
            .push_ms(*first_pause)
            .push_ms(*longest_pause)
            .push(*burst)
            .push_ms(*burst_window);
    }
}

/// probe_delivered.lua's arguments.
pub(crate) struct ProbeDeliveredArgs<'a> {
    pub sender: &'a str,
    /// When the probe left for WATI (Unix ms).
    pub sent_at_ms: u64,
}

impl ScriptArgs for ProbeDeliveredArgs<'_> {
    fn script() -> &'static Lua {
        &PROBE_DELIVERED
    }

    fn write(&self, argv: &mut Argv) {
        let Self { sender, sent_at_ms } = self;
        argv.push(*sender).push(*sent_at_ms);
    }
}

/// A number that cannot send freely now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unhealthy {
    /// Paused until this Unix ms.
    PausedUntil(u64),
    /// Back from a pause, sending only probes until one is delivered.
    Probing,
}

/// The numbers' states in Redis.
#[derive(Clone)]
pub struct SenderHealth {
    redis: RedisConn,
    key: String,
    first_pause: Duration,
}

impl SenderHealth {
    /// The states under `keys`; a number's first pause lasts `first_pause`.
    pub fn new(redis: RedisConn, keys: &Keys, first_pause: Duration) -> Self {
        Self {
            redis,
            key: keys.senders(),
            first_pause,
        }
    }

    /// A failure receipt for a message `sender` sent at `sent_at_ms`, whose rate is
    /// `messages_per_second` (0: none).
    pub async fn report(
        &self,
        sender: &str,
        kind: Trouble,
        sent_at_ms: u64,
        messages_per_second: u32,
    ) -> redis::RedisResult<Reported> {
        // A burst is about three in ten of what the number may send in the window.
        let burst = (messages_per_second.saturating_mul(3)).max(MIN_BURST);
        SenderTroubleArgs {
            sender,
            kind,
            sent_at_ms,
            first_pause: self.first_pause,
            longest_pause: LONGEST_PAUSE.max(self.first_pause),
            burst,
            burst_window: BURST_WINDOW,
        }
        .invocation()
        .key(&self.key)
        .invoke_async(&mut self.redis.clone())
        .await
    }

    /// A probe `sender` sent at `sent_at_ms` was delivered: it sends freely again, unless
    /// the probe left before the number's last pause began. Whether it sends freely now.
    pub async fn probe_delivered(&self, sender: &str, sent_at_ms: u64) -> redis::RedisResult<bool> {
        let cleared: u8 = ProbeDeliveredArgs { sender, sent_at_ms }
            .invocation()
            .key(&self.key)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(cleared == 1)
    }

    /// The numbers that cannot send freely at `now_ms` (Unix ms), by name.
    pub async fn unhealthy(&self, now_ms: u64) -> redis::RedisResult<HashMap<String, Unhealthy>> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.key)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(read_states(&fields, now_ms))
    }
}

/// What each process last read of the numbers' states: the unhealthy ones, by name.
/// Cheap to clone; [`SenderHealth::watch`] keeps it fresh.
#[derive(Clone, Default)]
pub struct PoolView(Arc<RwLock<HashMap<String, Unhealthy>>>);

impl PoolView {
    /// The numbers that could not send freely at the last reading.
    pub fn get(&self) -> HashMap<String, Unhealthy> {
        self.0
            .read()
            .map(|states| states.clone())
            .unwrap_or_default()
    }

    fn set(&self, states: HashMap<String, Unhealthy>) {
        if let Ok(mut current) = self.0.write() {
            *current = states;
        }
    }
}

/// How often each process reads the numbers' states.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

impl SenderHealth {
    /// Reads the states every [`WATCH_EVERY`] into `view`, and sets each number's
    /// state gauge, until `shutdown` turns true. A failed reading keeps the last one.
    pub async fn watch(
        self,
        senders: Senders,
        view: PoolView,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match self.unhealthy(crate::now_ms()).await {
                Ok(states) => {
                    for sender in senders.iter() {
                        let state = match states.get(sender.name()) {
                            None => 0.0,
                            Some(Unhealthy::PausedUntil(_)) => 1.0,
                            Some(Unhealthy::Probing) => 2.0,
                        };
                        metrics::gauge!(crate::metrics::SENDER_STATE, "sender" => sender.name().to_owned())
                            .set(state);
                    }
                    view.set(states);
                }
                Err(e) => tracing::warn!(error = %e, "could not read the sending numbers' states"),
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_EVERY) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    }
}

/// The unhealthy numbers in the states' hash at `now_ms`.
fn read_states(fields: &HashMap<String, String>, now_ms: u64) -> HashMap<String, Unhealthy> {
    let mut states = HashMap::new();
    for (name, value) in fields {
        let Some((kind, sender)) = name.split_once(':') else {
            continue;
        };
        let at: u64 = value.parse().unwrap_or(0);
        match kind {
            word::PAUSED if at > now_ms => {
                states.insert(sender.to_owned(), Unhealthy::PausedUntil(at));
            }
            word::PROBE => {
                states
                    .entry(sender.to_owned())
                    .or_insert(Unhealthy::Probing);
            }
            _ => {}
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_numbers_codes_pause_at_once() {
        assert_eq!(Trouble::of_code("131048"), Trouble::Limit);
        assert_eq!(Trouble::of_code("130429"), Trouble::Limit);
        assert_eq!(Trouble::of_code("131026"), Trouble::Recipient);
        assert_eq!(Trouble::of_code("131000"), Trouble::Failure);
        assert_eq!(Trouble::of_code(""), Trouble::Failure);
    }

    #[test]
    fn a_pause_outranks_a_probe_and_an_ended_pause_is_health() {
        let fields: HashMap<String, String> = [
            ("paused:111", "2000"),
            ("probe:111", "0"),
            ("paused:222", "500"),
            ("probe:333", "0"),
            ("strikes:444", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let states = read_states(&fields, 1000);
        assert_eq!(states.get("111"), Some(&Unhealthy::PausedUntil(2000)));
        assert_eq!(states.get("222"), None);
        assert_eq!(states.get("333"), Some(&Unhealthy::Probing));
        assert_eq!(states.len(), 2);
    }
}
