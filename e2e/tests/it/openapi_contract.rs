//! docs/openapi.json against the running api, by schemathesis (PyPI): every check it
//! has (server errors, undocumented statuses and headers, response schemas, schema-valid
//! requests refused, schema-invalid requests accepted, auth, stateful links such as
//! send-otp's `requestId` to otp-status) over generated requests, with zero failures.
//! `e2e/schemathesis/hooks.py` makes real phone numbers and codes for the formats the
//! document names. Missing schemathesis fails the test, naming it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use otp_e2e::TestEnv;

/// The countries of the phones `hooks.py` makes.
const GENERATED_COUNTRIES: &str = "91,44";

/// The version `.ci/run` installs.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

#[tokio::test]
async fn the_openapi_document_holds_for_generated_requests_including_its_links() {
    let mut env = TestEnv::new().await;
    // SMS on for the generated phones' countries, so that `channel: "sms"` is a
    // request the api must accept, and the Twilio callback route exists. Generated
    // requests come fast from one address; the limits themselves are tested elsewhere,
    // and their 429s are documented.
    let _api = env
        .start_sms_api(GENERATED_COUNTRIES, &["--sms-sends-per-minute", "0"])
        .await;
    let _worker = env
        .start_worker_with(env.sms_worker_config(GENERATED_COUNTRIES, Duration::ZERO))
        .await;

    // A signed-in user, so that /me and /logout are tested past their 401.
    let phone = "919876543210";
    env.send_accepted(phone).await;
    let code = env.wait_for_messages(phone, 1).await[0].code.clone();
    let (status, body) = env.verify(phone, &code).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a token").to_owned();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let report = std::env::temp_dir().join(format!("schemathesis-{}", env.prefix));
    let output = tokio::task::spawn_blocking({
        let api_url = env.api_url.clone();
        let root = root.clone();
        let report = report.clone();
        move || {
            Command::new("schemathesis")
                .current_dir(&root)
                .env("SCHEMATHESIS_HOOKS", "hooks")
                .env("PYTHONPATH", root.join("schemathesis"))
                .args(["run", "../docs/openapi.json", "--url", &api_url])
                .args(["--checks", "all", "--max-examples", "40", "--seed", "7"])
                .args(["--generation-database", "none", "--no-color"])
                .arg("--report-dir")
                .arg(&report)
                .args(["-H", &format!("Authorization: Bearer {token}")])
                .output()
        }
    })
    .await
    .expect("the run")
    .unwrap_or_else(|e| {
        panic!("schemathesis is not installed ({e}): `pip install {SCHEMATHESIS}` (.ci/run does)")
    });
    let _ = std::fs::remove_dir_all(&report);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{text}"
    );
    assert!(text.contains("Stateful"), "the stateful phase ran:\n{text}");
    assert!(!text.contains("❌"), "{text}");
}
