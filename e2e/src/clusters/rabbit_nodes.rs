//! The RabbitMQ cluster asked through `rabbitmqctl` (its nodes run no management plugin,
//! so no HTTP API), its JSON answers read here: which node leads a quorum queue, and
//! whether the cluster is whole.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::port_open;

/// A node of the local RabbitMQ cluster: `rN@localhost`, AMQP on 127.0.0.1:57N0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RabbitNode(u8);

/// The three nodes `scripts/cluster up` starts.
const NODES: [RabbitNode; 3] = [RabbitNode(1), RabbitNode(2), RabbitNode(3)];
/// How long one `rabbitmqctl` call may take (the script's own bound).
const CLI_WITHIN: Duration = Duration::from_secs(60);

impl RabbitNode {
    /// Its number, 1 to 3, as `scripts/cluster` names it.
    pub fn number(self) -> u8 {
        self.0
    }

    pub fn amqp_port(self) -> u16 {
        5700 + 10 * u16::from(self.0)
    }

    /// The node an Erlang node name (`r2@localhost`) names, if one of the three.
    fn from_name(name: &str) -> Option<Self> {
        NODES.into_iter().find(|node| node.to_string() == name)
    }
}

impl std::fmt::Display for RabbitNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}@localhost", self.0)
    }
}

/// `scripts/cluster`'s state directory: `CLUSTER_DIR`, read as the script reads it.
fn state_dir() -> PathBuf {
    std::env::var_os("CLUSTER_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/tmp/otp-cluster"), PathBuf::from)
}

/// `rabbitmqctl -n NODE -q ARGS…` with what the script's `ctl` gives it: the shared
/// HOME that holds the clusters' Erlang cookie, the node's empty env file instead of
/// /etc/rabbitmq's, no crash dump. Its output, or what went wrong.
async fn rabbitmqctl(node: RabbitNode, args: &[&str]) -> Result<String, String> {
    let dir = state_dir().join("rabbit");
    let run = tokio::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
        .arg("-n")
        .arg(node.to_string())
        .arg("-q")
        .args(args)
        .env("HOME", dir.join("home"))
        .env(
            "RABBITMQ_CONF_ENV_FILE",
            dir.join(format!("r{}", node.0)).join("env.conf"),
        )
        .env("ERL_CRASH_DUMP_SECONDS", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CLI_WITHIN, run)
        .await
        .map_err(|_| format!("rabbitmqctl {args:?} gave no answer within {CLI_WITHIN:?}"))?
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rabbitmqctl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The node that leads the quorum queue `queue` now (`list_queues name leader`, asked
/// of each node in turn until one answers). Fails the test when none names a leader.
pub async fn rabbit_leader(queue: &str) -> RabbitNode {
    let mut answers = Vec::new();
    for node in NODES {
        let listing = rabbitmqctl(
            node,
            &["list_queues", "name", "leader", "--formatter", "json"],
        );
        match listing.await.and_then(|listing| leader_in(&listing, queue)) {
            Ok(leader) => return leader,
            Err(e) => answers.push(format!("asked {node}: {e}")),
        }
    }
    panic!(
        "no leader found for queue '{queue}':\n{}",
        answers.join("\n")
    )
}

/// The leader of `queue` in a `list_queues name leader --formatter json` answer.
fn leader_in(listing: &str, queue: &str) -> Result<RabbitNode, String> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        /// Absent or empty for a queue that has no leader (a classic queue).
        #[serde(default)]
        leader: Option<String>,
    }
    let rows: Vec<Row> = serde_json::from_str(listing)
        .map_err(|e| format!("an answer that is not a queue list ({e}): {listing}"))?;
    let row = rows
        .iter()
        .find(|row| row.name == queue)
        .ok_or_else(|| format!("no queue '{queue}' listed"))?;
    let leader = row.leader.as_deref().unwrap_or("");
    RabbitNode::from_name(leader).ok_or_else(|| format!("leader '{leader}', not a cluster node"))
}

/// The running nodes in a `cluster_status --formatter json` answer, sorted.
fn running_nodes(status: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Status {
        running_nodes: Vec<String>,
    }
    let mut running = serde_json::from_str::<Status>(status)
        .map_err(|e| format!("an answer without running_nodes ({e}): {status}"))?
        .running_nodes;
    running.sort();
    Ok(running)
}

/// What is wrong with the RabbitMQ cluster; nothing when every node accepts AMQP
/// connections and r1 lists all three nodes as running.
pub(super) async fn problems() -> Vec<String> {
    let mut problems = Vec::new();
    for node in NODES {
        if !port_open(node.amqp_port()).await {
            problems.push(format!(
                "rabbitmq {node}: AMQP port {} closed",
                node.amqp_port()
            ));
        }
    }
    if !problems.is_empty() {
        // Unhealthy already: spare the CLI's second.
        return problems;
    }
    let [first, ..] = NODES;
    let want: Vec<String> = NODES.iter().map(RabbitNode::to_string).collect();
    let status = rabbitmqctl(first, &["cluster_status", "--formatter", "json"]).await;
    match status.and_then(|status| running_nodes(&status)) {
        Ok(running) if running == want => {}
        Ok(running) => problems.push(format!(
            "rabbitmq: running nodes seen from {first}: {}",
            running.join(",")
        )),
        Err(e) => problems.push(format!("rabbitmq: cluster_status on {first}: {e}")),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_have_the_scripts_names_and_ports() {
        let names: Vec<(String, u16)> = NODES
            .iter()
            .map(|node| (node.to_string(), node.amqp_port()))
            .collect();
        assert_eq!(
            names,
            [
                ("r1@localhost".to_owned(), 5710),
                ("r2@localhost".to_owned(), 5720),
                ("r3@localhost".to_owned(), 5730)
            ]
        );
    }

    #[test]
    fn the_leader_of_the_named_queue_is_read_from_the_listing() {
        let listing = "[\n{\"name\":\"tq.send\",\"leader\":\"r2@localhost\"}\n,\
                       {\"name\":\"tq.send.dead\",\"leader\":\"r3@localhost\"}\n]\n";
        assert_eq!(leader_in(listing, "tq.send"), Ok(RabbitNode(2)));
        assert_eq!(leader_in(listing, "tq.send.dead"), Ok(RabbitNode(3)));
        assert!(leader_in(listing, "other").is_err());
        assert!(leader_in("[\n]\n", "tq.send").is_err());
        assert!(leader_in("Error: unable to perform an operation", "tq.send").is_err());
        let foreign = "[{\"name\":\"q\",\"leader\":\"rabbit@localhost\"}]";
        assert!(leader_in(foreign, "q").is_err());
    }

    #[test]
    fn running_nodes_are_read_from_the_cluster_status() {
        let status =
            r#"{"alarms":[],"running_nodes":["r3@localhost","r1@localhost"],"disk_nodes":[]}"#;
        assert_eq!(
            running_nodes(status),
            Ok(vec!["r1@localhost".to_owned(), "r3@localhost".to_owned()])
        );
        assert!(running_nodes("{}").is_err());
    }
}
