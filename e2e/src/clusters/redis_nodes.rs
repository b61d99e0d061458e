//! The Redis Cluster asked node by node over the harness's own connections
//! (`connect_node`): which master holds a key's slot, and whether the cluster is whole.

use std::time::Duration;

use otp_shared::redis::conn::{RedisConn, connect_node};
use redis::FromRedisValue;

/// The six nodes `scripts/cluster up` starts.
const PORTS: [u16; 6] = [7101, 7102, 7103, 7104, 7105, 7106];
/// How long one node may take to connect, or to answer one command.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// A connection to the one node on `port`, or `None` when it does not answer.
async fn node(port: u16) -> Option<RedisConn> {
    let url = format!("redis://127.0.0.1:{port}");
    tokio::time::timeout(ANSWER_WITHIN, connect_node(&url))
        .await
        .ok()?
        .ok()
}

/// `cmd`'s answer on `conn`, or `None` when there is none in time.
async fn query<T: FromRedisValue>(conn: &mut RedisConn, cmd: &redis::Cmd) -> Option<T> {
    tokio::time::timeout(ANSWER_WITHIN, cmd.query_async(conn))
        .await
        .ok()?
        .ok()
}

/// The answer to `cmd` of the first node, in port order, that gives one: a node that is
/// down (in a failover test) is skipped.
async fn ask_any<T: FromRedisValue>(cmd: &redis::Cmd) -> Option<T> {
    for port in PORTS {
        let Some(mut conn) = node(port).await else {
            continue;
        };
        if let Some(answer) = query(&mut conn, cmd).await {
            return Some(answer);
        }
    }
    None
}

/// The port of the master that holds `key`'s slot now (`CLUSTER KEYSLOT`, then that
/// slot in `CLUSTER NODES`, from whichever nodes answer). Fails the test when no node
/// answers or no master that is up holds the slot.
pub async fn redis_master_of(key: &str) -> u16 {
    let slot: u16 = ask_any(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
        .await
        .expect("no Redis node answered CLUSTER KEYSLOT");
    let nodes: String = ask_any(redis::cmd("CLUSTER").arg("NODES"))
        .await
        .expect("no Redis node answered CLUSTER NODES");
    master_of_slot(&nodes, slot)
        .unwrap_or_else(|| panic!("no master holds slot {slot}; CLUSTER NODES said:\n{nodes}"))
}

/// The port of the master, not failing, that a `CLUSTER NODES` answer says holds `slot`.
/// A line: `id ip:port@bus[,hostname] flags master ping pong epoch link slot…`, each slot
/// `n` or `lo-hi` (or `[n->-id]`/`[n-<-id]` while one migrates: not held).
fn master_of_slot(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (address, flags) = (fields.get(1)?, fields.get(2)?);
        let master = flags.split(',').any(|flag| flag == "master");
        // `fail` or `fail?` (suspected by this node).
        let failing = flags.split(',').any(|flag| flag.starts_with("fail"));
        let holds = fields.get(8..)?.iter().any(|range| holds(range, slot));
        if master && !failing && holds {
            address
                .split(['@', ','])
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()
        } else {
            None
        }
    })
}

/// Whether one slot entry of `CLUSTER NODES` (`n` or `lo-hi`) covers `slot`.
fn holds(range: &str, slot: u16) -> bool {
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
}

/// The value of `field` in an `INFO`-style answer (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (name, value) = line.trim_end().split_once(':')?;
        (name == field).then_some(value)
    })
}

/// What is wrong with the Redis Cluster; nothing when every node answers and says
/// `cluster_state:ok` with all 16384 slots ok and 6 known nodes, and three masters and
/// three replicas whose master link is up.
pub(super) async fn problems() -> Vec<String> {
    const WANT: [(&str, &str); 3] = [
        ("cluster_state", "ok"),
        ("cluster_slots_ok", "16384"),
        ("cluster_known_nodes", "6"),
    ];
    let mut problems = Vec::new();
    let (mut masters, mut replicas) = (0, 0);
    for port in PORTS {
        let answers = match node(port).await {
            Some(mut conn) => {
                let cluster: Option<String> =
                    query(&mut conn, redis::cmd("CLUSTER").arg("INFO")).await;
                let replication: Option<String> =
                    query(&mut conn, redis::cmd("INFO").arg("replication")).await;
                cluster.zip(replication)
            }
            None => None,
        };
        let Some((cluster, replication)) = answers else {
            problems.push(format!("redis 127.0.0.1:{port} does not answer"));
            continue;
        };
        for (field, want) in WANT {
            let got = info_field(&cluster, field).unwrap_or("none");
            if got != want {
                problems.push(format!(
                    "redis 127.0.0.1:{port}: {field}:{got} (want {want})"
                ));
            }
        }
        match info_field(&replication, "role") {
            Some("master") => masters += 1,
            Some("slave") if info_field(&replication, "master_link_status") == Some("up") => {
                replicas += 1;
            }
            Some("slave") => problems.push(format!(
                "redis 127.0.0.1:{port}: replica whose master link is not up"
            )),
            other => problems.push(format!("redis 127.0.0.1:{port}: role {other:?}")),
        }
    }
    if masters != 3 {
        problems.push(format!("redis: {masters} masters (want 3)"));
    }
    if replicas != 3 {
        problems.push(format!("redis: {replicas} replicas in sync (want 3)"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `CLUSTER NODES` answer in the middle of a failover: 7101 has failed, its
    /// replica 7104 holds its slots; 7102 is migrating slot 6000 out.
    const NODES: &str = "\
a1 127.0.0.1:7101@17101 master,fail - 1 2 1 disconnected 0-5460
a2 127.0.0.1:7102@17102 myself,master - 0 0 2 connected 5461-10922 [6000->-a3]
a3 127.0.0.1:7103@17103,host3 master - 0 3 3 connected 10923-16383
a4 127.0.0.1:7104@17104 master - 0 4 7 connected 0-5460
a5 127.0.0.1:7105@17105 slave a2 0 5 2 connected
a6 127.0.0.1:7106@17106 master,fail? - 0 6 8 connected 9999
";

    #[test]
    fn the_master_that_is_up_holds_the_slot() {
        assert_eq!(master_of_slot(NODES, 0), Some(7104));
        assert_eq!(master_of_slot(NODES, 5460), Some(7104));
        assert_eq!(master_of_slot(NODES, 6000), Some(7102));
        assert_eq!(master_of_slot(NODES, 9999), Some(7102));
        assert_eq!(master_of_slot(NODES, 16383), Some(7103));
    }

    #[test]
    fn a_slot_no_master_that_is_up_holds_has_none() {
        let failed_only = "a1 127.0.0.1:7101@17101 master,fail - 1 2 1 disconnected 0-5460\n";
        assert_eq!(master_of_slot(failed_only, 42), None);
        assert_eq!(master_of_slot("", 42), None);
    }

    #[test]
    fn info_fields_are_read_with_or_without_carriage_returns() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_port"), None);
    }
}
