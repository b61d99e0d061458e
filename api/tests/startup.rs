//! The api binary stops at start with one line naming a missing or weak setting.

use std::process::Command;

fn api_stderr(envs: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run the api");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const OTP_SECRET: (&str, &str) = ("OTP_SECRET", "0123456789abcdef0123456789abcdef");

#[test]
fn a_missing_jwt_secret_stops_the_api_with_one_line() {
    assert_eq!(api_stderr(&[OTP_SECRET]), "JWT_SECRET not configured\n");
}

#[test]
fn a_short_jwt_secret_is_refused() {
    assert_eq!(
        api_stderr(&[OTP_SECRET, ("JWT_SECRET", "too-short")]),
        "JWT_SECRET must be at least 32 bytes\n"
    );
}

#[test]
fn a_missing_otp_secret_is_named() {
    assert_eq!(
        api_stderr(&[("JWT_SECRET", "0123456789abcdef0123456789abcdef")]),
        "OTP_SECRET not configured\n"
    );
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--help")
        .output()
        .expect("run the api");
    let help = String::from_utf8_lossy(&output.stdout);
    for name in [
        "REDIS_URL",
        "AMQP_URL",
        "OTP_TTL_SECONDS",
        "OTP_MAX_ATTEMPTS",
        "OTP_LENGTH",
        "JWT_SECRET",
        "JWT_TTL_SECONDS",
        "API_ADDR",
        "METRICS_ADDR",
        "KEY_PREFIX",
        "QUEUE_PREFIX",
        "OTP_SECRET",
        "RESEND_COOLDOWN_SECONDS",
        "MAX_SENDS_PER_CODE",
        "PHONE_SENDS_PER_HOUR",
        "IP_REQUESTS_PER_MINUTE",
        "TRUST_FORWARDED_FOR",
    ] {
        assert!(help.contains(name), "--help names {name}");
    }
}
