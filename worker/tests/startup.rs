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
fn a_missing_wati_key_stops_the_worker_with_one_line() {
    assert_eq!(
        worker_stderr(
            &[],
            &[
                ("OTP_SECRET", "0123456789abcdef0123456789abcdef"),
                ("WATI_BASE_URL", "http://127.0.0.1:9/1"),
            ],
        ),
        "WATI_API_KEY not configured\n"
    );
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("--help")
        .output()
        .expect("run the worker");
    let help = String::from_utf8_lossy(&output.stdout);
    for name in [
        "REDIS_URL",
        "AMQP_URL",
        "OTP_TTL_SECONDS",
        "KEY_PREFIX",
        "QUEUE_PREFIX",
        "OTP_SECRET",
        "WATI_BASE_URL",
        "WATI_API_KEY",
        "WATI_TEMPLATE_NAME",
        "METRICS_ADDR",
        "DEV_MODE",
        "DEAD_LETTER_MAX_LENGTH",
        "DEAD_LETTER_TTL_SECONDS",
    ] {
        assert!(help.contains(name), "--help names {name}");
    }
}

#[test]
fn secrets_on_the_command_line_are_refused() {
    for (flag, name) in [
        ("--otp-secret", "OTP_SECRET"),
        ("--wati-api-key", "WATI_API_KEY"),
        ("--redis-url", "REDIS_URL"),
        ("--amqp-url", "AMQP_URL"),
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
