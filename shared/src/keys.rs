//! The Redis key layout and RabbitMQ names, all under one configurable prefix so that
//! tests and tenants can share a server.

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

    /// The code record of a phone, a hash that the Lua scripts of both processes read:
    /// `code_id` (jobs name it, so a superseded code is never sent), `mac` (keyed hash
    /// of phone and code, what a guess is compared with), `sealed` (the code encrypted
    /// for the worker), `expires_at` (Unix ms, Redis clock), `attempts` (wrong guesses),
    /// `sends` (sends of this code), `locked` (set when the attempt cap is reached) and
    /// `delivered` (set once any send of this code reached WATI).
    /// The record outlives `expires_at` by one TTL so that verify can answer "expired".
    pub fn otp(&self, phone: &str) -> String {
        format!("{}:otp:{phone}", self.prefix)
    }

    /// Minimum gap between two sends to a phone (string with a TTL).
    pub fn cooldown(&self, phone: &str) -> String {
        format!("{}:cooldown:{phone}", self.prefix)
    }

    /// Send times of a phone over the last hour (sorted set).
    pub fn phone_sends(&self, phone: &str) -> String {
        format!("{}:sends:{phone}", self.prefix)
    }

    /// Requests of one client address in the current minute (counter with a TTL).
    pub fn client_requests(&self, addr: &str) -> String {
        format!("{}:ip:{addr}", self.prefix)
    }

    /// Delivery status of one send request (hash).
    pub fn status(&self, request_id: &str) -> String {
        format!("{}:status:{request_id}", self.prefix)
    }

    /// Next free slot of the WATI send rate, shared by all workers.
    pub fn wati_send_rate(&self) -> String {
        format!("{}:wati-send-rate", self.prefix)
    }

    /// Set once WATI accepted a request, so a redelivered job is not sent again.
    pub fn delivered(&self, request_id: &str) -> String {
        format!("{}:delivered:{request_id}", self.prefix)
    }

    /// Held by the worker delivering a request, so that a copy of its job (redelivered
    /// after a broken link, or re-published) does not call WATI at the same time.
    pub fn delivery_lease(&self, request_id: &str) -> String {
        format!("{}:lease:{request_id}", self.prefix)
    }

    /// User id of a phone.
    pub fn user_by_phone(&self, phone: &str) -> String {
        format!("{}:user-phone:{phone}", self.prefix)
    }

    /// A user (hash: id, phone, createdAt, lastLoginAt).
    pub fn user(&self, id: &str) -> String {
        format!("{}:user:{id}", self.prefix)
    }

    /// A live session, by the token's `jti`; logout deletes it.
    pub fn session(&self, jti: &str) -> String {
        format!("{}:session:{jti}", self.prefix)
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
