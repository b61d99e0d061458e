//! The api binary stops at start with one line naming a missing or weak setting.

use std::process::Command;

fn api_stderr(envs: &[(&str, &str)]) -> String {
    api_stderr_with_args(&[], envs)
}

fn api_stderr_with_args(args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(args)
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
fn secrets_on_the_command_line_are_refused() {
    let secret = "0123456789abcdef0123456789abcdef";
    for (flag, name) in [
        ("--jwt-secret", "JWT_SECRET"),
        ("--otp-secret", "OTP_SECRET"),
        ("--wati-webhook-secret", "WATI_WEBHOOK_SECRET"),
        ("--redis-url", "REDIS_URL"),
        ("--amqp-url", "AMQP_URL"),
        ("--database-url", "DATABASE_URL"),
        ("--test-phones", "TEST_PHONES"),
        ("--twilio-auth-token", "TWILIO_AUTH_TOKEN"),
        ("--app-webhook-secret", "APP_WEBHOOK_SECRET"),
    ] {
        assert_eq!(
            api_stderr_with_args(&[flag, secret], &[]),
            format!(
                "{name} must come from the environment, not the command line (which `ps` shows)\n"
            )
        );
    }
}

#[test]
fn the_repositorys_placeholder_secrets_stop_the_api_outside_dev_mode() {
    let stderr = api_stderr(&[
        OTP_SECRET,
        ("JWT_SECRET", "change-me-jwt-secret-at-least-32-bytes"),
    ]);
    assert!(
        stderr.starts_with("JWT_SECRET is a placeholder from the repository"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
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
        "TRUSTED_PROXIES",
        "DATABASE_URL",
        "REFRESH_TTL_SECONDS",
        "DEV_MODE",
        "SENDS_PER_MINUTE",
        "ALLOWED_COUNTRY_CODES",
        "HTTP_MAX_CONNECTIONS",
        "COUNTRY_LOCALES",
        "TEST_PHONES",
    ] {
        assert!(help.contains(name), "--help names {name}");
    }
}

/// The api's stderr when it starts with good settings but the PostgreSQL database at
/// `database_url` (it gets as far as PostgreSQL: Redis must be up).
fn api_stderr_with_database(database_url: &str) -> String {
    api_stderr(&[
        OTP_SECRET,
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("DATABASE_URL", database_url),
        ("API_ADDR", "127.0.0.1:0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
    ])
}

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh database on the local server for one test, dropped by the guard.
struct TestDatabase {
    name: String,
}

impl TestDatabase {
    async fn create() -> Self {
        use sqlx::Connection;
        let name = format!(
            "startup{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = sqlx::PgConnection::connect(&format!("{POSTGRES}/postgres"))
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (start it with pg_ctlcluster)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        Self { name }
    }

    fn url(&self) -> String {
        format!("{POSTGRES}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for clean-up");
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) =
                    sqlx::PgConnection::connect(&format!("{POSTGRES}/postgres")).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join()
        .expect("clean-up thread");
    }
}

#[test]
fn a_missing_database_stops_the_api_with_one_line_naming_it() {
    let name = format!(
        "missing{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let stderr = api_stderr_with_database(&format!("{POSTGRES}/{name}"));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("cannot reach PostgreSQL: ")
            && stderr.contains(&format!("database \"{name}\" does not exist")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_failed_migration_stops_the_api_with_one_line() {
    let database = TestDatabase::create().await;
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&database.url())
            .await
            .expect("the test database");
        // A table of the same name and another shape: the first migration cannot run.
        sqlx::query("CREATE TABLE users (name text)")
            .execute(&mut conn)
            .await
            .expect("a conflicting table");
    }
    let url = database.url();
    let stderr = tokio::task::spawn_blocking(move || api_stderr_with_database(&url))
        .await
        .expect("the api ran");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("PostgreSQL migration failed: ")
            && stderr.contains("\"users\" already exists"),
        "{stderr}"
    );
}
