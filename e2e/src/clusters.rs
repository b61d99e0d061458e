//! The local test clusters `scripts/cluster up` starts (a Redis Cluster on
//! 127.0.0.1:7101-7106, a RabbitMQ cluster of r1, r2 and r3@localhost): who holds what,
//! asked of the servers in Rust, and a node stopped and started again. The script only
//! stops and starts the node; every wait (the node is gone, it is back, the clusters are
//! whole) is here, with a deadline.

mod rabbit_nodes;
mod redis_nodes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

pub use rabbit_nodes::{RabbitNode, rabbit_leader};
pub use redis_nodes::redis_master_of;

use crate::eventually;

/// How long a node may take to stop, and the clusters to be whole again after a start
/// (the script's own `CLUSTER_WAIT` default).
const WAIT: Duration = Duration::from_secs(60);

/// Whether something accepts TCP connections on 127.0.0.1:`port` now.
async fn port_open(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

/// Waits until both clusters are whole: every Redis node answers with the cluster ok,
/// three masters and three replicas in sync; every RabbitMQ node accepts AMQP
/// connections and r1 sees all three running. Fails the test with what is still wrong
/// after a minute.
pub async fn wait_until_whole() {
    let give_up = Instant::now() + WAIT;
    loop {
        let mut problems = redis_nodes::problems().await;
        if problems.is_empty() {
            // Only now: the RabbitMQ check runs the CLI, a second of CPU a call.
            problems = rabbit_nodes::problems().await;
        }
        if problems.is_empty() {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "the clusters are not whole again after {WAIT:?}:\n{}",
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A node a test stops; `scripts/cluster` stops and starts it.
#[derive(Clone, Copy, Debug)]
enum Node {
    /// The Redis node on this port.
    Redis(u16),
    Rabbit(RabbitNode),
}

impl Node {
    /// The `scripts/cluster` arguments that stop (`verb` "stop") or start the node.
    fn script_args(self, verb: &str) -> [String; 2] {
        match self {
            Self::Redis(port) => [format!("redis-{verb}"), port.to_string()],
            Self::Rabbit(node) => [format!("rabbit-{verb}"), node.number().to_string()],
        }
    }

    /// The port that closes when the node stops.
    fn port(self) -> u16 {
        match self {
            Self::Redis(port) => port,
            Self::Rabbit(node) => node.amqp_port(),
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(port) => write!(f, "redis 127.0.0.1:{port}"),
            Self::Rabbit(node) => write!(f, "rabbitmq {node}"),
        }
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

/// Fails the test with what `scripts/cluster` printed when it failed.
fn check_script(args: &[String], output: &std::process::Output) {
    assert!(
        output.status.success(),
        "scripts/cluster {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `scripts/cluster` with `args`; fails the test when it fails.
async fn script(args: &[String]) {
    let output = tokio::process::Command::new(script_path())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script_path().display()));
    check_script(args, &output);
}

/// A node stopped by a test. [`Restart::start`] starts it again and waits until the
/// clusters are whole; dropping the guard without it does the same (also after a failed
/// assertion, then without the wait), for the tests that come next.
pub struct Restart {
    node: Node,
    /// Whether [`Restart::start`] ran (the drop then has nothing to do).
    started: bool,
}

impl Restart {
    /// Shuts the Redis node on `port` down (its replica takes over) and waits until
    /// nothing accepts connections there.
    pub async fn redis(port: u16) -> Self {
        Self::stop(Node::Redis(port)).await
    }

    /// Stops `node`'s RabbitMQ app (the VM stays, as in a failure the tests cause) and
    /// waits until its AMQP port is closed.
    pub async fn rabbit(node: RabbitNode) -> Self {
        Self::stop(Node::Rabbit(node)).await
    }

    async fn stop(node: Node) -> Self {
        // The guard first: a stop that worked but is not seen within the deadline
        // still starts the node again.
        let guard = Self {
            node,
            started: false,
        };
        script(&node.script_args("stop")).await;
        eventually(&format!("{node} to stop"), WAIT, || async move {
            (!port_open(node.port()).await).then_some(())
        })
        .await;
        guard
    }

    /// Starts the node again and waits until the clusters are whole.
    pub async fn start(mut self) {
        self.started = true;
        script(&self.node.script_args("start")).await;
        wait_until_whole().await;
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        let args = self.node.script_args("start");
        let started = std::process::Command::new(script_path())
            .args(&args)
            .output();
        if std::thread::panicking() {
            // A second panic would abort and hide the first failure: best effort.
            return;
        }
        let output = started.unwrap_or_else(|e| panic!("cannot run scripts/cluster: {e}"));
        check_script(&args, &output);
        // A drop cannot await, and it may run on the test's own runtime: the wait gets
        // a thread and a runtime of its own.
        std::thread::scope(|scope| {
            let waited = scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the wait")
                        .block_on(wait_until_whole());
                })
                .join();
            if let Err(panic) = waited {
                std::panic::resume_unwind(panic);
            }
        });
    }
}
