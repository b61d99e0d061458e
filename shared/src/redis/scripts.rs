//! Every Lua script of the service, each loaded once from its template (field names
//! filled in by [`records::render`]), with the words it exchanges with Rust (from
//! `words`, which the typed calls read too), and the one way to call it: a typed
//! arguments struct per script ([`ScriptArgs`]), the one place the order of its ARGV is
//! written, as a mini-redis command owns the order of its frame. The tests below read
//! every script: each placeholder must be a known field, each quoted lower-case literal
//! must be one of the script's declared words, which the Rust side takes from the same
//! constants when it writes arguments and reads replies, and the `ARGV[n]` a script
//! reads must be exactly the arguments its struct writes.

use std::sync::OnceLock;

use redis::{Script, ScriptInvocation, ToSingleRedisArg};

use super::records;
use super::words::codes as code_word;
use super::words::delivery as delivery_word;
use super::words::fallback as fallback_word;
use super::words::receipts as receipt_word;
use super::words::senders as sender_word;
use super::words::wati_budget as budget_word;

/// One script: its template, its words, and the script loaded from them on first use.
/// (Its name and words are for the tests below, which read every script.) It is called
/// only through its [`ScriptArgs`], so no caller writes its ARGV by position.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "name and words are read by the tests")
)]
pub(crate) struct Lua {
    name: &'static str,
    template: &'static str,
    /// Reply kinds and argument values the script spells as literals.
    words: &'static [&'static str],
    loaded: OnceLock<Script>,
}

impl Lua {
    const fn new(
        name: &'static str,
        template: &'static str,
        words: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            template,
            words,
            loaded: OnceLock::new(),
        }
    }

    fn script(&self) -> &Script {
        self.loaded.get_or_init(|| records::script(self.template))
    }
}

/// A script's arguments as one typed value: its fields are named, and [`write`] pushes
/// them in the script's ARGV order, the one place that order is written (a reorder
/// between a caller and its script was a silent bug). Callers fill the struct by field
/// name and add the keys.
///
/// [`write`]: ScriptArgs::write
pub(crate) trait ScriptArgs {
    /// The script these are the arguments of.
    fn script() -> &'static Lua;

    /// Pushes the arguments, `ARGV[1]` first.
    fn write(&self, argv: &mut Argv);

    /// A call of the script with these arguments; the caller adds its keys.
    fn invocation(&self) -> ScriptInvocation<'static> {
        let mut argv = Argv::default();
        self.write(&mut argv);
        let mut call = Self::script().script().prepare_invoke();
        call.arg(argv.0);
        call
    }
}

/// The ARGV of one call, as a [`ScriptArgs`] writes it.
#[derive(Default)]
pub(crate) struct Argv(Vec<Vec<u8>>);

impl Argv {
    /// Appends the next argument. Only a value that is one Redis argument is taken (an
    /// `Option` or a list would move every argument after it), so each push is one
    /// `ARGV[n]`.
    pub(crate) fn push(&mut self, value: impl ToSingleRedisArg) -> &mut Self {
        value.write_redis_args(&mut self.0);
        self
    }

    /// Appends a duration as whole milliseconds, the unit every script reads its
    /// durations in (µs only where a script says so).
    pub(crate) fn push_ms(&mut self, value: std::time::Duration) -> &mut Self {
        self.push(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }
}

macro_rules! lua {
    ($name:ident, $file:literal, $words:expr) => {
        pub(crate) static $name: Lua =
            Lua::new($file, include_str!(concat!("lua/", $file)), $words);
    };
}

// The api's: codes, limits and receipts.
lua!(
    SEND,
    "send.lua",
    &[
        code_word::LIMITED,
        code_word::NEW,
        code_word::RESEND,
        code_word::LONGER,
        code_word::CHECK
    ]
);
lua!(
    UNDO_SEND,
    "undo_send.lua",
    &[code_word::NEW, code_word::RESEND]
);
lua!(
    VERIFY,
    "verify.lua",
    &[
        code_word::OK,
        code_word::CLAIMED,
        code_word::NOT_FOUND,
        code_word::EXPIRED,
        code_word::LOCKED,
        code_word::WRONG,
    ]
);
lua!(
    FINISH_VERIFY,
    "finish_verify.lua",
    &[code_word::SPEND, code_word::RELEASE]
);
lua!(CLIENT_LIMIT, "client_limit.lua", &[]);
lua!(ADMIT, "admit.lua", &[]);
lua!(SENDS_PER_MINUTE, "sends_per_minute.lua", &[]);
lua!(
    RECEIPT,
    "receipt.lua",
    &[
        receipt_word::SENT,
        receipt_word::DELIVERED,
        receipt_word::READ,
        receipt_word::FAILED,
        receipt_word::UNKNOWN,
        receipt_word::OTHER_PHONE,
        receipt_word::UNCHANGED,
        receipt_word::APPLIED,
        receipt_word::DELETE,
        receipt_word::KEEP,
        receipt_word::REROUTE,
        receipt_word::REROUTED,
    ]
);
// The worker's: deliveries, leases and WATI's budgets.
lua!(
    START_DELIVERY,
    "start_delivery.lua",
    &[
        delivery_word::DELIVERED,
        delivery_word::FAILED,
        delivery_word::BUSY,
        delivery_word::EXPIRED,
        delivery_word::GONE,
        delivery_word::PENDING,
    ]
);
lua!(MARK_SENT, "mark_sent.lua", &[]);
lua!(
    END_DELIVERY,
    "end_delivery.lua",
    &[
        delivery_word::DELETE,
        delivery_word::EXPIRE,
        delivery_word::KEEP,
    ]
);
lua!(COUNT_CALL, "count_call.lua", &[]);
lua!(HOLD_LEASE, "hold_lease.lua", &[]);
lua!(CONFIRM_LEASE, "confirm_lease.lua", &[]);
lua!(
    CLAIM_BUDGET,
    "claim_budget.lua",
    &[
        budget_word::GRANTED,
        budget_word::WAIT,
        budget_word::CALLS,
        budget_word::MESSAGES,
        budget_word::PAUSED,
        budget_word::PROBE,
    ]
);
lua!(HOLD_CALLS, "hold_calls.lua", &[]);
// The api's, on a receipt: a sending number in trouble.
lua!(
    SENDER_TROUBLE,
    "sender_trouble.lua",
    &[
        sender_word::PAUSED,
        sender_word::PROBE,
        sender_word::SINCE,
        sender_word::STRIKES,
        sender_word::FAILS,
        sender_word::FAILS_FROM,
        sender_word::LIMIT,
        sender_word::FAILURE,
        sender_word::COUNTED,
        sender_word::STALE,
    ]
);
lua!(
    PROBE_DELIVERED,
    "probe_delivered.lua",
    &[sender_word::SINCE, sender_word::PROBE]
);
// Both processes': an SMS fallback.
lua!(
    BEGIN_FALLBACK,
    "begin_fallback.lua",
    &[
        fallback_word::NEW,
        fallback_word::AGAIN,
        fallback_word::TAKEN,
        fallback_word::DELIVERED,
        fallback_word::GONE,
    ]
);
lua!(RETIRE_CODE, "retire_code.lua", &[]);
lua!(ABANDON_FALLBACK, "abandon_fallback.lua", &[]);
// The worker's: fallback timers.
lua!(SET_TIMERS, "set_timers.lua", &[]);
lua!(CLAIM_TIMERS, "claim_timers.lua", &[]);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::phone::PhoneNumber;
    use crate::redis::admission::AdmitArgs;
    use crate::redis::client_limit::ClientLimitArgs;
    use crate::redis::codes::{
        Finish, FinishVerifyArgs, SendArgs, SendKind, UndoSendArgs, VerifyArgs,
    };
    use crate::redis::delivery::{
        CountCallArgs, EndDeliveryArgs, MarkSentArgs, Retire, StartDeliveryArgs,
    };
    use crate::redis::fallback::{AbandonFallbackArgs, BeginFallbackArgs, RetireCodeArgs};
    use crate::redis::fallback_timers::{ClaimTimersArgs, SetTimersArgs};
    use crate::redis::lease::{ConfirmLeaseArgs, HoldLeaseArgs};
    use crate::redis::receipts::{Happened, ReceiptArgs};
    use crate::redis::send_budget::SendsPerMinuteArgs;
    use crate::redis::sender_health::{ProbeDeliveredArgs, SenderTroubleArgs};
    use crate::redis::status::DeliveryState;
    use crate::redis::wati_budget::{ClaimBudgetArgs, HoldCallsArgs};

    const ALL: &[&Lua] = &[
        &SEND,
        &UNDO_SEND,
        &VERIFY,
        &FINISH_VERIFY,
        &CLIENT_LIMIT,
        &ADMIT,
        &SENDS_PER_MINUTE,
        &RECEIPT,
        &START_DELIVERY,
        &MARK_SENT,
        &END_DELIVERY,
        &COUNT_CALL,
        &HOLD_LEASE,
        &CONFIRM_LEASE,
        &CLAIM_BUDGET,
        &HOLD_CALLS,
        &SENDER_TROUBLE,
        &PROBE_DELIVERED,
        &BEGIN_FALLBACK,
        &RETIRE_CODE,
        &ABANDON_FALLBACK,
        &SET_TIMERS,
        &CLAIM_TIMERS,
    ];

    /// Every script file in `lua/` is one of [`ALL`].
    #[test]
    fn every_script_file_is_registered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/redis/lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the script folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let mut registered: Vec<String> = ALL.iter().map(|lua| lua.name.to_owned()).collect();
        registered.sort();
        assert_eq!(files, registered);
    }

    #[test]
    fn every_placeholder_is_a_known_field() {
        for lua in ALL {
            assert_eq!(
                records::unknown_placeholders(lua.template),
                Vec::<String>::new(),
                "{}",
                lua.name
            );
        }
    }

    /// Redis's clock is written once, as `{{now_ms}}` (or `{{now_us}}`) in `records`:
    /// a script that reads `TIME` itself has a copy that may drift from the others.
    #[test]
    fn no_script_reads_the_clock_itself() {
        for lua in ALL {
            assert!(
                !lua.template.contains("TIME"),
                "{}: read the clock with {{{{now_ms}}}}",
                lua.name
            );
        }
    }

    /// The quoted literals of a script, comments left out.
    fn literals(template: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in template.lines() {
            let code = line.split("--").next().unwrap_or("");
            assert!(
                !code.contains('"'),
                "double quotes in {line:?}: use single quotes"
            );
            let mut parts = code.split('\'');
            parts.next();
            while let Some(literal) = parts.next() {
                found.push(literal.to_owned());
                parts.next();
            }
        }
        found
    }

    /// Lower-case words are what a script shares with Rust (field names are
    /// placeholders); upper-case ones are Redis's own (commands, `PX`, `WITHSCORES`),
    /// the rest formats and separators.
    #[test]
    fn every_word_a_script_spells_is_one_rust_reads_or_writes() {
        for lua in ALL {
            let spelled: BTreeSet<String> = literals(lua.template)
                .into_iter()
                .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .collect();
            let declared: BTreeSet<String> = lua.words.iter().map(|w| (*w).to_owned()).collect();
            assert_eq!(spelled, declared, "{}: words spelled vs declared", lua.name);
        }
    }

    /// The `ARGV[n]` a script reads, comments left out. Only literal indices can be
    /// checked against its arguments struct, so any other use of `ARGV` fails here.
    fn argv_read(template: &str) -> BTreeSet<usize> {
        let mut read = BTreeSet::new();
        for line in template.lines() {
            let code = line.split("--").next().unwrap_or("");
            for (at, _) in code.match_indices("ARGV") {
                let rest = &code[at + "ARGV".len()..];
                let index = rest
                    .strip_prefix('[')
                    .and_then(|inner| inner.split_once(']'))
                    .and_then(|(digits, _)| digits.parse().ok());
                match index {
                    Some(n) => read.insert(n),
                    None => panic!("ARGV not read as ARGV[<digits>] in {line:?}"),
                };
            }
        }
        read
    }

    /// The script an arguments struct is for, and how many arguments it writes.
    fn written<A: ScriptArgs>(args: &A) -> (&'static str, usize) {
        let mut argv = Argv::default();
        args.write(&mut argv);
        (A::script().name, argv.0.len())
    }

    /// One value of every arguments struct. The values do not matter: each push is one
    /// argument (`Argv::push` takes nothing else) and no struct pushes conditionally.
    fn every_args_struct() -> Vec<(&'static str, usize)> {
        let phone = PhoneNumber::from_e164_digits("15550100000").expect("a phone");
        let id = Uuid::nil();
        let ms = Duration::from_millis(1);
        vec![
            written(&SendArgs {
                code_id: id,
                mac: b"mac",
                sealed: b"sealed",
                ttl: ms,
                record_grace: ms,
                cooldown: ms,
                max_sends_per_code: 1,
                phone_sends_per_hour: 1,
                request_id: id,
                phone: &phone,
                digits: 6,
                long_code_digits: 8,
                wrong_guesses_per_phone: 1,
                by_sms: false,
                unchecked_sends_per_hour: 3,
                checked: false,
            }),
            written(&UndoSendArgs {
                kind: SendKind::New,
                code_id: id,
                request_id: id,
            }),
            written(&VerifyArgs {
                mac: b"mac",
                max_attempts: 1,
                claim: id,
                claim_for: ms,
                bound_to: None,
                wrong_guesses_window: ms,
                client: "203.0.113.7",
                clients_per_code: 10,
            }),
            written(&FinishVerifyArgs {
                claim: id,
                how: Finish::Spend,
            }),
            written(&ClientLimitArgs { limit: 1 }),
            written(&AdmitArgs {
                capacity: 1,
                request_id: id,
                life: ms,
            }),
            written(&SendsPerMinuteArgs { limit: 1 }),
            written(&ReceiptArgs {
                happened: Happened::Sent,
                at_ms: 1,
                phone: &phone,
                code_kept: crate::redis::receipts::CodeKept::Delete,
                message_id: "",
            }),
            written(&StartDeliveryArgs {
                code_id: id,
                lease_owner: id,
                lease_for: ms,
            }),
            written(&MarkSentArgs {
                delivered_for: ms,
                code_id: id,
                lease_owner: id,
                from: None,
                locales: String::new(),
            }),
            written(&EndDeliveryArgs {
                code_id: id,
                state: DeliveryState::Failed,
                reason: "reason",
                info: None,
                calls: 0,
                lease_owner: id,
                retire: Retire::Delete,
            }),
            written(&CountCallArgs),
            written(&HoldLeaseArgs { owner: id, ttl: ms }),
            written(&ConfirmLeaseArgs {
                owner: id,
                ttl: ms,
                from: &crate::senders::SentFrom {
                    sender: crate::senders::Senders::default_channel(80)
                        .get(0)
                        .cloned()
                        .expect("a sender"),
                    probe: false,
                },
            }),
            written(&ClaimBudgetArgs {
                call_interval: None,
                wanted: 1,
                numbers: "default=80",
            }),
            written(&SenderTroubleArgs {
                sender: "default",
                kind: crate::redis::sender_health::Trouble::Limit,
                sent_at_ms: 1,
                first_pause: ms,
                longest_pause: ms,
                burst: 1,
                burst_window: ms,
            }),
            written(&HoldCallsArgs { hold: ms }),
            written(&ProbeDeliveredArgs {
                sender: "default",
                sent_at_ms: 1,
            }),
            written(&BeginFallbackArgs { request_id: id }),
            written(&RetireCodeArgs),
            written(&AbandonFallbackArgs {
                request_id: id,
                reason: "reason",
            }),
            written(&SetTimersArgs {
                after: ms,
                sends: &[],
            }),
            written(&ClaimTimersArgs {
                most: 1,
                claim_for: ms,
            }),
        ]
    }

    /// A script reads `ARGV[1]` to `ARGV[n]`, each of them, and nothing above, where `n`
    /// is what its arguments struct writes: an argument added or removed on one side
    /// only fails here.
    #[test]
    fn every_script_reads_exactly_the_arguments_its_struct_writes() {
        let structs = every_args_struct();
        let mut covered: Vec<&str> = structs.iter().map(|(name, _)| *name).collect();
        covered.sort();
        let mut registered: Vec<&str> = ALL.iter().map(|lua| lua.name).collect();
        registered.sort();
        assert_eq!(covered, registered, "one arguments struct per script");
        for (name, count) in structs {
            let lua = ALL
                .iter()
                .find(|lua| lua.name == name)
                .expect("a registered script");
            let expected: BTreeSet<usize> = (1..=count).collect();
            assert_eq!(
                argv_read(lua.template),
                expected,
                "{name}: the ARGV it reads vs the {count} its struct writes"
            );
        }
    }

    #[test]
    fn argv_indices_are_read_from_code_only() {
        assert_eq!(
            argv_read("local a = ARGV[2] -- not ARGV[9]\nreturn ARGV[10] .. ARGV[2]"),
            BTreeSet::from([2, 10])
        );
    }

    #[test]
    #[should_panic(expected = "ARGV not read as ARGV[<digits>]")]
    fn argv_read_by_a_computed_index_is_refused() {
        argv_read("return ARGV[i]");
    }

    #[test]
    fn a_field_spelled_out_is_caught() {
        let spelled = literals("redis.call('HSET', KEYS[1], 'status', 'sent') -- 'comment'");
        assert_eq!(spelled, ["HSET", "status", "sent"]);
    }
}
