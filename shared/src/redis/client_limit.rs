//! `IP_REQUESTS_PER_MINUTE`: requests of one client (an IPv4 address or an IPv6 /64)
//! in a fixed minute, over all api replicas; and `IP_NETWORK_REQUESTS_PER_MINUTE`, the
//! same over a client's wider network (an IPv4 /24, an IPv6 /48), so that many addresses
//! of one network do not each get a whole budget.

use std::net::IpAddr;
use std::time::Duration;

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::{Argv, CLIENT_LIMIT, Lua, ScriptArgs};

const WINDOW: Duration = Duration::from_secs(60);

/// client_limit.lua's arguments: the limit, and the window, always [`WINDOW`].
pub(crate) struct ClientLimitArgs {
    /// Requests a client may make in one window.
    pub limit: u32,
}

impl ScriptArgs for ClientLimitArgs {
    fn script() -> &'static Lua {
        &CLIENT_LIMIT
    }

    fn write(&self, argv: &mut Argv) {
        // Every field by name, so a field added here and not written does not compile.
        let Self { limit } = self;
        argv.push(*limit).push_ms(WINDOW);
    }
}

#[derive(Clone)]
pub struct ClientLimit {
    redis: RedisConn,
    keys: Keys,
    /// Per address; 0 is off.
    per_minute: u32,
    /// Per network; 0 is off.
    per_network_per_minute: u32,
}

impl ClientLimit {
    pub fn new(
        redis: RedisConn,
        keys: &Keys,
        per_minute: u32,
        per_network_per_minute: u32,
    ) -> Self {
        Self {
            redis,
            keys: keys.clone(),
            per_minute,
            per_network_per_minute,
        }
    }

    /// Counts a request of `client`, against its address's budget and then its
    /// network's (a request the address's refuses does not count for the network);
    /// `Some(wait)` when it is over either.
    pub async fn count(&self, client: IpAddr) -> redis::RedisResult<Option<Duration>> {
        for (limit, key) in [
            (self.per_minute, self.keys.client_requests(client)),
            (
                self.per_network_per_minute,
                self.keys.client_network_requests(client),
            ),
        ] {
            if limit == 0 {
                continue;
            }
            // One call per key: on a Redis Cluster they live in different slots.
            let wait_ms: u64 = ClientLimitArgs { limit }
                .invocation()
                .key(key)
                .invoke_async(&mut self.redis.clone())
                .await?;
            if wait_ms > 0 {
                return Ok(Some(Duration::from_millis(wait_ms)));
            }
        }
        Ok(None)
    }
}
