//! The lower-case words the Lua scripts spell as literals: reply kinds, and argument
//! values a script chooses between. Both sides take them from here: the script
//! registry (`scripts`) declares each script's words for its test, which checks them
//! against the script's text, and the typed calls write and read them. Nothing here
//! imports anything, so neither side depends on the other for its words.

/// The code scripts': send.lua, undo_send.lua, verify.lua and finish_verify.lua.
pub(crate) mod codes {
    pub const NEW: &str = "new";
    pub const RESEND: &str = "resend";
    pub const LIMITED: &str = "limited";
    pub const LONGER: &str = "longer";
    pub const CHECK: &str = "check";
    pub const OK: &str = "ok";
    pub const CLAIMED: &str = "claimed";
    pub const NOT_FOUND: &str = "not_found";
    pub const EXPIRED: &str = "expired";
    pub const LOCKED: &str = "locked";
    pub const WRONG: &str = "wrong";
    pub const SPEND: &str = "spend";
    pub const RELEASE: &str = "release";
}

/// The delivery scripts': start_delivery.lua and end_delivery.lua.
pub(crate) mod delivery {
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    pub const BUSY: &str = "busy";
    pub const EXPIRED: &str = "expired";
    pub const GONE: &str = "gone";
    pub const PENDING: &str = "pending";
    pub const DELETE: &str = "delete";
    pub const EXPIRE: &str = "expire";
    pub const KEEP: &str = "keep";
}

/// receipt.lua's.
pub(crate) mod receipts {
    pub const SENT: &str = "sent";
    pub const DELIVERED: &str = "delivered";
    pub const READ: &str = "read";
    pub const FAILED: &str = "failed";
    pub const UNKNOWN: &str = "unknown";
    pub const OTHER_PHONE: &str = "other_phone";
    pub const UNCHANGED: &str = "unchanged";
    pub const APPLIED: &str = "applied";
    pub const DELETE: &str = "delete";
    pub const KEEP: &str = "keep";
    pub const REROUTE: &str = "reroute";
    pub const REROUTED: &str = "rerouted";
}

/// begin_fallback.lua's.
pub(crate) mod fallback {
    pub const NEW: &str = "new";
    pub const AGAIN: &str = "again";
    pub const TAKEN: &str = "taken";
    pub const DELIVERED: &str = "delivered";
    pub const GONE: &str = "gone";
}

/// claim_budget.lua's.
pub(crate) mod wati_budget {
    pub const GRANTED: &str = "granted";
    pub const WAIT: &str = "wait";
    pub const CALLS: &str = "calls";
    pub const MESSAGES: &str = "messages";
    pub const PAUSED: &str = super::senders::PAUSED;
    pub const PROBE: &str = super::senders::PROBE;
}

/// The sending numbers' states (`Keys::senders`): each field is one of these, `:`, and
/// the number's name; and sender_trouble.lua's arguments and replies.
pub(crate) mod senders {
    /// Until when (Unix ms) the number is paused.
    pub const PAUSED: &str = "paused";
    /// Present while the number must show it delivers again: until when (Unix ms) the
    /// probe out is waited for (0: none out).
    pub const PROBE: &str = "probe";
    /// When its last pause began (Unix ms), and how many pauses in a row it has had.
    pub const SINCE: &str = "since";
    pub const STRIKES: &str = "strikes";
    /// Failures counted towards a burst, and since when (Unix ms).
    pub const FAILS: &str = "fails";
    pub const FAILS_FROM: &str = "fails_from";
    /// The kinds of trouble.
    pub const LIMIT: &str = "limit";
    pub const FAILURE: &str = "failure";
    /// The replies besides `paused`.
    pub const COUNTED: &str = "counted";
    pub const STALE: &str = "stale";
}
