//! `IP_REQUESTS_PER_MINUTE`: requests of one client (an IPv4 address or an IPv6 /64)
//! in a fixed minute, over all api replicas.

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
        argv.push(*limit).push(WINDOW.as_millis() as u64);
    }
}

#[derive(Clone)]
pub struct ClientLimit {
    redis: RedisConn,
    keys: Keys,
    /// 0 is off.
    per_minute: u32,
}

impl ClientLimit {
    pub fn new(redis: RedisConn, keys: &Keys, per_minute: u32) -> Self {
        Self {
            redis,
            keys: keys.clone(),
            per_minute,
        }
    }

    /// Counts a request of `client`; `Some(wait)` when it is over the limit.
    pub async fn count(&self, client: IpAddr) -> redis::RedisResult<Option<Duration>> {
        if self.per_minute == 0 {
            return Ok(None);
        }
        let wait_ms: u64 = ClientLimitArgs {
            limit: self.per_minute,
        }
        .invocation()
        .key(self.keys.client_requests(client))
        .invoke_async(&mut self.redis.clone())
        .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}
