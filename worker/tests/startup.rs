//! The worker binary stops at start with one line naming a setting it refuses.

use std::process::Command;

fn worker_stderr(args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run the worker");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn secrets_on_the_command_line_are_refused() {
    for (flag, name) in [
        ("--otp-secret", "OTP_SECRET"),
        ("--wati-api-key", "WATI_API_KEY"),
    ] {
        assert_eq!(
            worker_stderr(&[flag, "0123456789abcdef0123456789abcdef"], &[]),
            format!(
                "{name} must come from the environment, not the command line (which `ps` shows)\n"
            )
        );
    }
}

#[test]
fn codes_never_go_to_a_remote_wati_over_plain_http() {
    let stderr = worker_stderr(
        &[],
        &[
            ("OTP_SECRET", "0123456789abcdef0123456789abcdef"),
            ("WATI_API_KEY", "key"),
            ("WATI_BASE_URL", "http://live-mt-server.wati.io"),
        ],
    );
    assert_eq!(
        stderr,
        "WATI_BASE_URL must be https (http only to this machine, or with DEV_MODE=true)\n"
    );
}
