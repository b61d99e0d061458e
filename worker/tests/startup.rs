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
        "WATI_TEMPLATE_PARAM",
        "WATI_LOCALE_TEMPLATES",
        "WATI_PREFLIGHT",
        "WATI_TEMPLATE_CHECK_SECONDS",
        "WATI_CHANNEL_NUMBER",
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
        ("--twilio-auth-token", "TWILIO_AUTH_TOKEN"),
        ("--app-webhook-secret", "APP_WEBHOOK_SECRET"),
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

/// A sandbox with `templates`, served on a free port; its base URL with a tenant path.
async fn sandbox(templates: Vec<wati_sandbox::Template>) -> (wati_sandbox::Sandbox, String) {
    let sandbox = wati_sandbox::Sandbox::new(wati_sandbox::SandboxConfig {
        api_key: "check-key".into(),
        templates,
        ..wati_sandbox::SandboxConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let base = format!(
        "http://{}/12345",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(wati_sandbox::serve(
        sandbox.clone(),
        listener,
        std::future::pending(),
    ));
    (sandbox, base)
}

/// `worker check-wati` with only the WATI settings: exit code, stdout, stderr.
async fn check_wati(base: &str, extra: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .arg("check-wati")
        .env_clear()
        .env("WATI_BASE_URL", base)
        .env("WATI_API_KEY", "check-key");
    for (name, value) in extra {
        command.env(name, value);
    }
    // Off the test's runtime, which serves the sandbox meanwhile.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("run the worker");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_wati_prints_each_template_and_exits_0_when_all_can_carry_the_code() {
    let (_sandbox, base) = sandbox(vec![
        wati_sandbox::Template::authentication("login_otp", "en_US"),
        wati_sandbox::Template::authentication("login_otp_hi", "hi"),
    ])
    .await;
    let (code, stdout, stderr) =
        check_wati(&base, &[("WATI_LOCALE_TEMPLATES", "hi=login_otp_hi")]).await;
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    assert_eq!(
        stdout,
        "template      used for  language  category        status    parameters\n\
         login_otp     default   en_US     AUTHENTICATION  APPROVED  \"1\"\n\
         login_otp_hi  hi        hi        AUTHENTICATION  APPROVED  \"1\"\n\
         ok: every template can carry the code in parameter \"1\"\n"
    );
}

#[tokio::test]
async fn check_wati_names_what_is_wrong_and_exits_1() {
    let (sandbox, base) = sandbox(vec![wati_sandbox::Template {
        status: "PAUSED".into(),
        category: "UTILITY".into(),
        ..wati_sandbox::Template::authentication("login_otp", "en_US")
    }])
    .await;
    for version in ["v3", "v1"] {
        let (code, stdout, _) = check_wati(&base, &[("WATI_API_VERSION", version)]).await;
        assert_eq!(code, 1, "{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "login_otp  default   en_US     UTILITY   PAUSED  \"1\"",
                "error: login_otp: not APPROVED (status PAUSED)",
                "warning: login_otp: its category is UTILITY, not AUTHENTICATION: Meta refuses or re-categorises codes in other templates",
                "not ready: fix the errors above before sending codes",
            ],
            "{version}"
        );
    }
    // A list WATI will not give says what to do about it.
    sandbox.fail_listing(Some(403));
    let (code, stdout, stderr) = check_wati(&base, &[]).await;
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert_eq!(
        stderr,
        "WATI would not list the templates (HTTP 403): give the key the template-read scope (messagetemplatev3:read), or set WATI_PREFLIGHT=off\n"
    );
    let (code, _, stderr) = check_wati(&base, &[("WATI_API_KEY", "wrong")]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "WATI refused the API key (HTTP 401): check WATI_API_KEY\n"
    );
}
