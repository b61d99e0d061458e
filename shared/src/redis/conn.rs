//! Opens the Redis connection both processes use: one multiplexed, self-reconnecting
//! connection with timeouts, so a Redis outage turns into errors rather than hangs; to
//! one server, or to a Redis Cluster when `REDIS_URL` names several nodes.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to one Redis server or to a Redis Cluster. Cheap to clone; every clone
/// shares the same multiplexed connection(s).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    /// Routes each command (a script: by its first key) to the node that holds its slot,
    /// and follows the cluster when a replica takes over.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// How long one command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to Redis: `urls` names one server, or one or several nodes of a Redis
/// Cluster (comma-separated). Fails at once when it cannot be reached.
pub async fn connect(urls: &str) -> redis::RedisResult<RedisConn> {
    let nodes: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    match nodes.as_slice() {
        [one] => {
            let mut single = connect_single(one).await?;
            // One node of a Redis Cluster would answer MOVED for most keys, for ever:
            // it is taken as the cluster's seed instead.
            match is_cluster_node(&mut single).await {
                Ok(true) => {
                    tracing::info!(
                        "REDIS_URL names a node of a Redis Cluster: connecting to the cluster"
                    );
                    connect_cluster(&nodes).await
                }
                Ok(false) => Ok(RedisConn::Single(single)),
                // A user without INFO (an ACL without @dangerous) still gets the server.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether Redis runs as a cluster (INFO refused); using it as one server");
                    Ok(RedisConn::Single(single))
                }
            }
        }
        several => connect_cluster(several).await,
    }
}

/// Connects to the one server `url` names, even when it is a node of a cluster: for
/// tools that walk a cluster node by node (a SCAN through a cluster connection would go
/// to a different node at each step).
pub async fn connect_node(url: &str) -> redis::RedisResult<RedisConn> {
    connect_single(url.trim()).await.map(RedisConn::Single)
}

async fn connect_cluster(nodes: &[&str]) -> redis::RedisResult<RedisConn> {
    let client = redis::cluster::ClusterClient::builder(nodes.to_vec())
        .response_timeout(RESPONSE_TIMEOUT)
        .connection_timeout(CONNECT_TIMEOUT)
        .retries(2)
        .build()?;
    client.get_async_connection().await.map(RedisConn::Cluster)
}

/// Whether the server runs in cluster mode (`INFO cluster` says `cluster_enabled:1`).
async fn is_cluster_node(conn: &mut ConnectionManager) -> redis::RedisResult<bool> {
    let info: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

async fn connect_single(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}

/// Whether Redis answers a PING now (readiness).
pub async fn answers(redis: &RedisConn) -> bool {
    redis::cmd("PING")
        .query_async::<String>(&mut redis.clone())
        .await
        .is_ok()
}

/// Whether a Redis error means Redis could not answer (an outage: retry later, a 503)
/// rather than that it answered something our code did not expect (a bug: a 500).
pub fn is_outage(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match error.kind() {
        ErrorKind::Io
        | ErrorKind::AuthenticationFailed
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        _ => {
            error.is_timeout()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                // A server that cannot take writes now: out of memory, busy with a
                // script, failing to persist, without its replicas, out of clients.
                || matches!(
                    error.code(),
                    Some("OOM" | "BUSY" | "MISCONF" | "NOREPLICAS" | "MASTERDOWN")
                )
                || error
                    .detail()
                    .is_some_and(|d| d.contains("max number of clients"))
        }
    }
}
