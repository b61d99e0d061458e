//! The layouts of the Redis hashes that Lua scripts of both processes touch, as one
//! list. Scripts never spell a field or a status value themselves: they write
//! `{{code.sealed}}` or `{{state.sent}}`, and `script` fills in the quoted name from
//! here before the script is loaded, so Rust and Lua cannot drift apart. The script
//! registry (`scripts`) has a test that every placeholder in every script is known.
//!
//! A status only moves forward: `{{state.ranks}}` is a Lua table of each state's rank,
//! and every script that writes a state writes it only over a lower rank.
//!
//! The times in these records are Redis's clock, never a process's: `{{now_ms}}` is
//! that clock in Unix ms, as a Lua expression, written once here for every script that
//! reads the time (`{{now_us}}` in µs, for the WATI budgets' spacing).

/// The code record of a phone (`Keys::otp`).
pub mod code {
    /// The code's id; jobs name it, so a superseded code is never sent.
    pub const CODE_ID: &str = "code_id";
    /// Keyed hash of phone and code: what a guess is compared with.
    pub const MAC: &str = "mac";
    /// The code encrypted for the worker.
    pub const SEALED: &str = "sealed";
    /// Unix ms (Redis clock) after which the code no longer verifies.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Wrong guesses so far.
    pub const ATTEMPTS: &str = "attempts";
    /// Sends of this code (the first and the re-sends).
    pub const SENDS: &str = "sends";
    /// Set when the cap of wrong guesses not bound to a send is reached: such guesses
    /// are refused from then on; guesses bound to a send still count on their own.
    pub const LOCKED: &str = "locked";
    /// Prefix of one field per send of this code (`send:<request id>`): a guess bound
    /// to a request id is taken only if that send is one of this code's.
    pub const SEND_PREFIX: &str = "send:";
    /// Prefix of one field per send counting the wrong guesses bound to it
    /// (`guesses:<request id>`); at the cap, that send alone is locked.
    pub const GUESSES_PREFIX: &str = "guesses:";
    /// Set once any send of this code reached WATI.
    pub const DELIVERED: &str = "delivered";
    /// Set once WhatsApp reported a send of this code delivered (or read).
    pub const RECEIVED: &str = "received";
    /// A request that guessed right and is logging in with the code, and until when
    /// (Unix ms): the code is spent only once the login is written.
    pub const CLAIM: &str = "claim";
    pub const CLAIM_UNTIL: &str = "claim_until";
    /// The request whose SMS carries this code, when one does (an SMS fallback, or an
    /// SMS the user asked for): WhatsApp's trouble sends a code by SMS at most once.
    pub const FALLBACK: &str = "fallback";
}

/// The delivery status of one send request (`Keys::status`).
pub mod status {
    /// One of the [`state`](super::state) values.
    pub const STATE: &str = "status";
    /// Calls made to WATI for this request.
    pub const ATTEMPTS: &str = "attempts";
    /// Unix ms of the last change.
    pub const UPDATED_AT: &str = "updated_at";
    /// Why a send failed or expired.
    pub const REASON: &str = "reason";
    /// WATI's own explanation, where it gave one.
    pub const INFO: &str = "info";
    /// The phone and code the send is for, so a receipt can find the code record.
    pub const PHONE: &str = "phone";
    pub const CODE_ID: &str = "code_id";
    /// Unix ms when the api accepted the send.
    pub const ACCEPTED_AT: &str = "accepted_at";
    /// Unix ms when WhatsApp delivered the message, and when the user read it.
    pub const DELIVERED_AT: &str = "delivered_at";
    pub const READ_AT: &str = "read_at";
    /// WhatsApp's error code of a failure receipt.
    pub const FAILED_CODE: &str = "failed_code";
    /// How the code went out: one of the [`channel`](super::channel) values; absent
    /// means WhatsApp.
    pub const CHANNEL: &str = "channel";
    /// The sending number WATI accepted the message from (its name), when (Unix ms), and
    /// `1` if it was a probe of a number back from a pause.
    pub const SENDER: &str = "sender";
    pub const SENT_AT: &str = "sent_at";
    pub const PROBE: &str = "probe";
    /// The send's languages, comma-separated, most wanted first: a rerouted send goes
    /// out in the same template.
    pub const LOCALES: &str = "locales";
    /// Times Meta refused the send for its number's trouble and it went out again from
    /// another, and WhatsApp's id of the last message refused so.
    pub const REROUTES: &str = "reroutes";
    pub const REFUSED_MESSAGE: &str = "refused_message";
}

/// The values of [`status::CHANNEL`].
pub mod channel {
    pub const WHATSAPP: &str = "whatsapp";
    /// A review phone's send, which reaches no provider.
    pub const TEST: &str = "test";
    pub const SMS: &str = "sms";
}

/// The values of [`status::STATE`].
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const EXPIRED: &str = "expired";
    pub const DELIVERED: &str = "delivered";
    pub const READ: &str = "read";

    /// Each state's rank: a state is written only over a lower one. The worker's
    /// outcomes share a rank, so none overwrites another; WhatsApp's receipts outrank
    /// them, because they say what really happened (a call that timed out may still
    /// have been delivered).
    pub const RANKS: &[(&str, u8)] = &[
        (QUEUED, 0),
        (SENDING, 1),
        (SENT, 2),
        (FAILED, 2),
        (EXPIRED, 2),
        (DELIVERED, 3),
        (READ, 4),
    ];
}

/// `{{state.ranks}}`: the ranks as a Lua table, `{['queued'] = 0, …}`.
fn lua_ranks() -> String {
    let entries: Vec<String> = state::RANKS
        .iter()
        .map(|(name, rank)| format!("['{name}'] = {rank}"))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// `{{now_ms}}` and `{{now_us}}`: Redis's clock as a Lua expression that calls `TIME`
/// where the script reads it. (A function called at once: the expression needs the one
/// reply of `TIME` twice, its seconds and its µs, and only a function can name it.)
const CLOCK: &[(&str, &str)] = &[
    (
        "{{now_ms}}",
        "(function() local t = redis.call('TIME') \
         return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end)()",
    ),
    (
        "{{now_us}}",
        "(function() local t = redis.call('TIME') \
         return tonumber(t[1]) * 1000000 + tonumber(t[2]) end)()",
    ),
];

/// Every placeholder a script may use, and what it stands for.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("{{code.code_id}}", code::CODE_ID),
    ("{{code.mac}}", code::MAC),
    ("{{code.sealed}}", code::SEALED),
    ("{{code.expires_at}}", code::EXPIRES_AT),
    ("{{code.attempts}}", code::ATTEMPTS),
    ("{{code.sends}}", code::SENDS),
    ("{{code.locked}}", code::LOCKED),
    ("{{code.send_prefix}}", code::SEND_PREFIX),
    ("{{code.guesses_prefix}}", code::GUESSES_PREFIX),
    ("{{code.delivered}}", code::DELIVERED),
    ("{{code.received}}", code::RECEIVED),
    ("{{code.claim}}", code::CLAIM),
    ("{{code.claim_until}}", code::CLAIM_UNTIL),
    ("{{code.fallback}}", code::FALLBACK),
    ("{{status.state}}", status::STATE),
    ("{{status.attempts}}", status::ATTEMPTS),
    ("{{status.updated_at}}", status::UPDATED_AT),
    ("{{status.reason}}", status::REASON),
    ("{{status.info}}", status::INFO),
    ("{{status.phone}}", status::PHONE),
    ("{{status.code_id}}", status::CODE_ID),
    ("{{status.accepted_at}}", status::ACCEPTED_AT),
    ("{{status.delivered_at}}", status::DELIVERED_AT),
    ("{{status.read_at}}", status::READ_AT),
    ("{{status.failed_code}}", status::FAILED_CODE),
    ("{{status.channel}}", status::CHANNEL),
    ("{{status.sender}}", status::SENDER),
    ("{{status.sent_at}}", status::SENT_AT),
    ("{{status.probe}}", status::PROBE),
    ("{{status.locales}}", status::LOCALES),
    ("{{status.reroutes}}", status::REROUTES),
    ("{{status.refused_message}}", status::REFUSED_MESSAGE),
    ("{{channel.sms}}", channel::SMS),
    ("{{state.queued}}", state::QUEUED),
    ("{{state.sending}}", state::SENDING),
    ("{{state.sent}}", state::SENT),
    ("{{state.failed}}", state::FAILED),
    ("{{state.expired}}", state::EXPIRED),
    ("{{state.delivered}}", state::DELIVERED),
    ("{{state.read}}", state::READ),
];

/// The script with every placeholder replaced by its quoted Lua string (and
/// `{{state.ranks}}` by the rank table, the clock by its expression).
pub(crate) fn render(template: &str) -> String {
    let named = PLACEHOLDERS
        .iter()
        .fold(template.to_owned(), |text, (placeholder, name)| {
            text.replace(placeholder, &format!("'{name}'"))
        })
        .replace("{{state.ranks}}", &lua_ranks());
    CLOCK.iter().fold(named, |text, (placeholder, expression)| {
        text.replace(placeholder, expression)
    })
}

/// A Redis script built from a template (see the module comment).
pub(crate) fn script(template: &str) -> redis::Script {
    redis::Script::new(&render(template))
}

/// Placeholders left in a rendered script: names the list above does not know.
#[cfg(test)]
pub(crate) fn unknown_placeholders(template: &str) -> Vec<String> {
    let rendered = render(template);
    let mut unknown = Vec::new();
    let mut rest = rendered.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start..];
        let end = after.find("}}").map_or(after.len(), |e| e + 2);
        unknown.push(after[..end].to_owned());
        rest = &after[end..];
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_quoted_field_names() {
        assert_eq!(
            render("redis.call('HSET', KEYS[1], {{status.state}}, {{state.sent}})"),
            "redis.call('HSET', KEYS[1], 'status', 'sent')"
        );
    }

    #[test]
    fn ranks_become_a_lua_table_covering_every_state() {
        let rendered = render("local RANK = {{state.ranks}}");
        assert!(rendered.starts_with("local RANK = {['queued'] = 0, ['sending'] = 1,"));
        assert!(rendered.ends_with("['read'] = 4}"));
        for (name, _) in state::RANKS {
            assert!(rendered.contains(&format!("['{name}']")), "{name}");
        }
    }

    #[test]
    fn the_clock_becomes_one_call_of_time() {
        for placeholder in ["{{now_ms}}", "{{now_us}}"] {
            let rendered = render(&format!("local now = {placeholder}"));
            assert_eq!(
                rendered.matches("redis.call('TIME')").count(),
                1,
                "{rendered}"
            );
            assert!(!rendered.contains("{{"), "{rendered}");
        }
    }

    #[test]
    fn an_unknown_placeholder_is_reported() {
        assert_eq!(
            unknown_placeholders("{{code.sealed}} {{code.seal}} {{status.state}}"),
            vec!["{{code.seal}}".to_owned()]
        );
        assert!(unknown_placeholders("return 1").is_empty());
    }
}
