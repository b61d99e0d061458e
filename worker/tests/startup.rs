//! The worker binary stops at start with one line naming a missing setting.

use std::process::Command;

#[test]
fn a_missing_wati_key_stops_the_worker_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("OTP_SECRET", "0123456789abcdef0123456789abcdef")
        .env("WATI_BASE_URL", "http://127.0.0.1:9/1")
        .output()
        .expect("run the worker");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
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
    ] {
        assert!(help.contains(name), "--help names {name}");
    }
}
