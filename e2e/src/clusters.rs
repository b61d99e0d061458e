//! Drives the local test clusters through `scripts/cluster` (which starts them without
//! Docker): stop and start nodes, find who holds what.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `scripts/cluster` with `args`; its output, or a failure that says what failed.
pub fn run(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
    let output = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/cluster {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Waits until `scripts/cluster status` finds every node up again (a restarted Redis
/// node has to rejoin and sync first).
pub fn wait_until_whole() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = Command::new(&script)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success());
        if healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the clusters are not whole again after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Starts a stopped node again when dropped, also after a failed assertion, and waits
/// until the clusters are whole, for the tests that come next.
pub struct Restart {
    /// `scripts/cluster` arguments that start the node.
    start: Vec<String>,
}

impl Restart {
    /// Stops a node with `stop` (arguments of `scripts/cluster`); dropping the guard runs
    /// `start`.
    pub fn stop(stop: &[&str], start: &[&str]) -> Self {
        run(stop);
        Self {
            start: start.iter().map(|&arg| arg.to_owned()).collect(),
        }
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        let start: Vec<&str> = self.start.iter().map(String::as_str).collect();
        if std::thread::panicking() {
            // A second panic would abort and hide the first failure: best effort.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
            let _ = Command::new(script).args(&start).status();
            return;
        }
        run(&start);
        wait_until_whole();
    }
}
