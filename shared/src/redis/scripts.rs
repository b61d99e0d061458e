//! Every Lua script of the service, each loaded once from its template (field names
//! filled in by [`records::render`]), with the words it exchanges with Rust (from
//! `words`, which the typed calls read too), and the one way to call it: a typed
//! arguments struct per script ([`ScriptArgs`]), the one place the order of its ARGV is
//! written, as a mini-redis command owns the order of its frame. The tests below read
//! every script: each placeholder must be a known field, and each quoted lower-case
//! literal must be one of the script's declared words, which the Rust side takes from
//! the same constants when it writes arguments and reads replies.

use std::sync::OnceLock;

use redis::{Script, ScriptInvocation, ToSingleRedisArg};

use super::records;
use super::words::codes as code_word;
use super::words::delivery as delivery_word;
use super::words::receipts as receipt_word;
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
        code_word::LONGER
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
lua!(
    CLAIM_BUDGET,
    "claim_budget.lua",
    &[
        budget_word::GRANTED,
        budget_word::WAIT,
        budget_word::CALLS,
        budget_word::MESSAGES,
    ]
);
lua!(HOLD_CALLS, "hold_calls.lua", &[]);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
        &CLAIM_BUDGET,
        &HOLD_CALLS,
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

    #[test]
    fn a_field_spelled_out_is_caught() {
        let spelled = literals("redis.call('HSET', KEYS[1], 'status', 'sent') -- 'comment'");
        assert_eq!(spelled, ["HSET", "status", "sent"]);
    }
}
