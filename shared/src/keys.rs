//! The Redis key layout and RabbitMQ names, all under one configurable prefix so that
//! tests and tenants can share a server. Key builders take checked types, so a key is
//! never built from an unchecked string.
//!
//! On a Redis Cluster every script's keys must share a hash slot, which the part in
//! braces decides: everything about a phone, and about each send to it (status,
//! delivered mark, lease), carries the phone (`{919876543210}`); an access session and
//! its revocation carry the refresh session id; the worker's budgets share `{budget}`.
//! What is global otherwise (admission, the minute budget, a client's requests) is one
//! key per call.

use uuid::Uuid;

use crate::phone::PhoneNumber;

/// Builds every Redis key the service uses.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The code record of a phone: a hash laid out in [`crate::records::code`]. It
    /// outlives its `expires_at` by one TTL so that verify can answer "expired".
    pub fn otp(&self, phone: &PhoneNumber) -> String {
        format!("{}:{{{phone}}}:otp", self.prefix)
    }

    /// Wrong guesses for a phone across its codes (a count that lives 90 days past the
    /// last one).
    pub fn wrong_guesses(&self, phone: &PhoneNumber) -> String {
        format!("{}:{{{phone}}}:wrong-guesses", self.prefix)
    }

    /// Minimum gap between two sends to a phone (string with a TTL).
    pub fn cooldown(&self, phone: &PhoneNumber) -> String {
        format!("{}:{{{phone}}}:cooldown", self.prefix)
    }

    /// Send times of a phone over the last hour (sorted set).
    pub fn phone_sends(&self, phone: &PhoneNumber) -> String {
        format!("{}:{{{phone}}}:sends", self.prefix)
    }

    /// Requests of one client address in the current minute (counter with a TTL).
    pub fn client_requests(&self, addr: &str) -> String {
        format!("{}:ip:{addr}", self.prefix)
    }

    /// Delivery status of one send request to `phone`: a hash laid out in
    /// [`crate::records::status`].
    pub fn status(&self, phone: &PhoneNumber, request_id: Uuid) -> String {
        format!("{}:{{{phone}}}:status:{request_id}", self.prefix)
    }

    /// The phone a send request was for (a string that lives as long as its status), so
    /// that the status can be found from the request id alone.
    pub fn request_phone(&self, request_id: Uuid) -> String {
        format!("{}:request:{request_id}", self.prefix)
    }

    /// When the next WATI call may start (µs, Redis clock), shared by all workers.
    pub fn wati_calls(&self) -> String {
        format!("{}:{{budget}}:wati-calls", self.prefix)
    }

    /// Recipients handed to WATI in the last second: a list of `time_µs:count` entries,
    /// oldest first, shared by all workers.
    pub fn whatsapp_messages(&self) -> String {
        format!("{}:{{budget}}:whatsapp-messages", self.prefix)
    }

    /// The sum of the counts in [`Keys::whatsapp_messages`], kept beside it.
    pub fn whatsapp_messages_sum(&self) -> String {
        format!("{}:{{budget}}:whatsapp-messages-sum", self.prefix)
    }

    /// Sends admitted by any api replica and not yet handed to WATI: a sorted set of
    /// request ids scored by the Unix ms after which they can no longer be sent.
    pub fn pending_sends(&self) -> String {
        format!("{}:pending-sends", self.prefix)
    }

    /// Set once WATI accepted a request, so a redelivered job is not sent again.
    pub fn delivered(&self, phone: &PhoneNumber, request_id: Uuid) -> String {
        format!("{}:{{{phone}}}:delivered:{request_id}", self.prefix)
    }

    /// Held by the worker delivering a request, so that a copy of its job (redelivered
    /// after a broken link, or re-published) does not call WATI at the same time.
    pub fn delivery_lease(&self, phone: &PhoneNumber, request_id: Uuid) -> String {
        format!("{}:{{{phone}}}:lease:{request_id}", self.prefix)
    }

    /// Sends accepted over all phones, by minute (`SENDS_PER_MINUTE`).
    pub fn sends_per_minute(&self) -> String {
        format!("{}:sends-per-minute", self.prefix)
    }

    /// Set when a refresh session ends (logout, a reused refresh token), for as long
    /// as its access tokens live: they are refused from then on.
    pub fn revoked_session(&self, session_id: Uuid) -> String {
        format!("{}:{{{session_id}}}:revoked", self.prefix)
    }

    /// A live access-token session of refresh session `session_id`, by the token's
    /// `jti`; logout deletes it.
    pub fn session(&self, session_id: Uuid, jti: &str) -> String {
        format!("{}:{{{session_id}}}:session:{jti}", self.prefix)
    }
}

/// RabbitMQ queue names.
#[derive(Clone, Debug)]
pub struct QueueNames {
    /// Send jobs.
    pub send: String,
    /// Jobs that failed permanently or could not be read.
    pub dead: String,
}

impl QueueNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            send: format!("{prefix}.send"),
            dead: format!("{prefix}.send.dead"),
        }
    }
}
