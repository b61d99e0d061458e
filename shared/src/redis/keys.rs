//! The Redis key layout, all under one configurable prefix so that tests and tenants
//! can share a server. Key builders take checked types, so a key is
//! never built from an unchecked string.
//!
//! On a Redis Cluster every script's keys must share a hash slot, which the part in
//! braces decides: everything about a phone, and about each send to it (status,
//! delivered mark, lease), carries the phone (`{919876543210}`); an access session and
//! its revocation carry the refresh session id; the worker's budgets share `{budget}`.
//! What is global otherwise (admission, the minute budget, a client's requests) is one
//! key per call.

use std::net::{IpAddr, Ipv6Addr};

use uuid::Uuid;

use crate::phone::PhoneNumber;

/// Which delivery of a request: its first (on the channel it was asked for), or its SMS
/// fallback (after WhatsApp could not deliver it). Each has its own status, delivered
/// mark and lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    First,
    Fallback,
}

impl Delivery {
    /// What a fallback's keys add to its request's.
    fn suffix(self) -> &'static str {
        match self {
            Delivery::First => "",
            Delivery::Fallback => ":sms",
        }
    }
}

/// One client as the limits count it: an IPv4 address, or an IPv6 address's /64 (one
/// host commonly holds a whole /64).
pub fn client_label(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => {
            let network = Ipv6Addr::from_bits(ip.to_bits() >> 64 << 64);
            format!("{network}/64")
        }
    }
}

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

    /// The code record of a phone: a hash laid out in [`crate::redis::records::code`]. It
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

    /// Requests of one client in the current minute (counter with a TTL): of an IPv4
    /// address, or of an IPv6 /64, since one host commonly holds a whole /64.
    pub fn client_requests(&self, client: IpAddr) -> String {
        format!("{}:ip:{}", self.prefix, client_label(client))
    }

    /// Requests of one client network (`IP_NETWORK_REQUESTS_PER_MINUTE`): an IPv4 /24,
    /// an IPv6 /48.
    pub fn client_network_requests(&self, client: IpAddr) -> String {
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let network = std::net::Ipv4Addr::from_bits(ip.to_bits() >> 8 << 8);
                format!("{}:net:{network}/24", self.prefix)
            }
            IpAddr::V6(ip) => {
                let network = Ipv6Addr::from_bits(ip.to_bits() >> 80 << 80);
                format!("{}:net:{network}/48", self.prefix)
            }
        }
    }

    /// Delivery status of one send request to `phone`: a hash laid out in
    /// [`crate::redis::records::status`].
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

    /// Recipients one sending number (by its name) was handed in the last counted
    /// second: a list of `time_µs:count` entries, oldest first, shared by all workers.
    pub fn whatsapp_messages(&self, sender: &str) -> String {
        format!("{}:{{budget}}:whatsapp-messages:{sender}", self.prefix)
    }

    /// The sum of the counts in [`Keys::whatsapp_messages`], kept beside it.
    pub fn whatsapp_messages_sum(&self, sender: &str) -> String {
        format!("{}:{{budget}}:whatsapp-messages-sum:{sender}", self.prefix)
    }

    /// The sending numbers' states (paused, probing, …): a hash whose fields are laid out
    /// in `words::senders`.
    pub fn senders(&self) -> String {
        format!("{}:{{budget}}:senders", self.prefix)
    }

    /// Sends admitted by any api replica and not yet handed to WATI: a sorted set of
    /// request ids scored by the Unix ms after which they can no longer be sent.
    pub fn pending_sends(&self) -> String {
        format!("{}:pending-sends", self.prefix)
    }

    /// The fallback timers of WhatsApp sends WATI accepted: a sorted set of send jobs
    /// scored by the Unix ms their timer runs out (`redis::fallback_timers`).
    pub fn fallback_timers(&self) -> String {
        format!("{}:fallback-timers", self.prefix)
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

    /// [`Keys::status`] of one delivery of a request: a fallback's is laid out the same.
    pub fn status_of(&self, phone: &PhoneNumber, request_id: Uuid, delivery: Delivery) -> String {
        format!("{}{}", self.status(phone, request_id), delivery.suffix())
    }

    /// [`Keys::delivered`] of one delivery of a request.
    pub fn delivered_of(
        &self,
        phone: &PhoneNumber,
        request_id: Uuid,
        delivery: Delivery,
    ) -> String {
        format!("{}{}", self.delivered(phone, request_id), delivery.suffix())
    }

    /// [`Keys::delivery_lease`] of one delivery of a request.
    pub fn lease_of(&self, phone: &PhoneNumber, request_id: Uuid, delivery: Delivery) -> String {
        format!(
            "{}{}",
            self.delivery_lease(phone, request_id),
            delivery.suffix()
        )
    }

    /// Sends accepted to one country (by calling code), by minute
    /// (`COUNTRY_SENDS_PER_MINUTE`).
    pub fn country_sends_per_minute(&self, calling_code: u16) -> String {
        format!("{}:sends-per-minute:{calling_code}", self.prefix)
    }

    /// Set when the app's webhook at `url` answered 410 Gone (by a hash of the URL, so
    /// that another URL starts afresh).
    pub fn app_webhook_gone(&self, url: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, url.as_bytes());
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:app-webhook-gone:{hex}", self.prefix)
    }

    /// Refreshes of one refresh session, by minute.
    pub fn session_refreshes(&self, session_id: Uuid) -> String {
        format!("{}:refreshes:{session_id}", self.prefix)
    }

    /// SMS sent over all phones, by minute (`SMS_SENDS_PER_MINUTE`).
    pub fn sms_per_minute(&self) -> String {
        format!("{}:sms-per-minute", self.prefix)
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
    pub fn session(&self, session_id: Uuid, jti: Uuid) -> String {
        format!("{}:{{{session_id}}}:session:{jti}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole
    /// key when it has none, modulo 16384.
    fn slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let tagged = key
            .find('{')
            .and_then(|open| {
                let close = key[open + 1..].find('}')? + open + 1;
                (close > open + 1).then(|| &bytes[open + 1..close])
            })
            .unwrap_or(bytes);
        let mut crc: u16 = 0;
        for &byte in tagged {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let keys = Keys::new("otp");
        let key = |ip: &str| keys.client_requests(ip.parse().expect("an address"));
        assert_eq!(
            key("2001:db8:1:2:aaaa::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::9"), "otp:ip:2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.9"), "otp:ip:203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "otp:ip:203.0.113.9");
    }

    #[test]
    fn the_slot_function_agrees_with_redis() {
        // From `redis-cli cluster keyslot` on the local cluster.
        assert_eq!(slot("{919876543210}"), 16197);
        assert_eq!(slot("x:{919812345678}:otp"), 9054);
        assert_eq!(slot("{a}"), 15495);
    }

    #[test]
    fn the_keys_each_script_touches_share_one_slot() {
        let keys = Keys::new("otp");
        let phone = PhoneNumber::from_e164_digits("919876543210").expect("a phone");
        let (request, session) = (Uuid::new_v4(), Uuid::new_v4());
        let groups = [
            // send.lua, undo_send.lua, verify.lua, receipt.lua and the worker's
            // start_delivery, mark_sent and end_delivery.
            vec![
                keys.otp(&phone),
                keys.cooldown(&phone),
                keys.phone_sends(&phone),
                keys.wrong_guesses(&phone),
                keys.status(&phone, request),
                keys.delivered(&phone, request),
                keys.delivery_lease(&phone, request),
                // begin_fallback.lua, retire_code.lua, and the SMS fallback's delivery.
                keys.status_of(&phone, request, Delivery::Fallback),
                keys.delivered_of(&phone, request, Delivery::Fallback),
                keys.lease_of(&phone, request, Delivery::Fallback),
            ],
            // claim_budget.lua and sender_trouble.lua.
            vec![
                keys.wati_calls(),
                keys.senders(),
                keys.whatsapp_messages("15550001111"),
                keys.whatsapp_messages_sum("15550001111"),
                keys.whatsapp_messages("default"),
            ],
            // The MGET of a bearer token's check.
            vec![
                keys.session(session, Uuid::new_v4()),
                keys.revoked_session(session),
            ],
        ];
        for group in groups {
            let first = slot(&group[0]);
            for key in &group {
                assert_eq!(slot(key), first, "{key} is not in the slot of {}", group[0]);
            }
        }
        // Different phones spread over the cluster rather than sharing one slot.
        let other = PhoneNumber::from_e164_digits("919812345678").expect("a phone");
        assert_ne!(slot(&keys.otp(&phone)), slot(&keys.otp(&other)));
    }
}
