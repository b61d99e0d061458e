//! A real flow, then a scrape of both `/metrics`: every metric moved as it should.
//! (Its own test binary: the metrics recorder is process-wide.)

use otp_e2e::prometheus::{Sample, families, parse, value};
use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::{Capacity, WatiApiVersion};
use wati_sandbox::ScriptedReply;

/// A metric name, the labels it is filtered by, and the value it should have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

const PHONE: &str = "919876543210";
const REFUSED: &str = "14155552671";

async fn scrape(env: &TestEnv, base: &str) -> Vec<Sample> {
    let text = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("text");
    parse(&text)
}

#[tokio::test]
async fn a_real_flow_moves_every_metric() {
    let mut env = TestEnv::new().await;
    let budgets = budgets(WatiApiVersion::V3, 100, 1000, 32);
    let Capacity::Sends {
        sends: capacity, ..
    } = budgets.capacity(std::time::Duration::from_secs(300))
    else {
        panic!("a budget gives a capacity");
    };
    let mut api_config = env.api_config();
    api_config.limits.resend_cooldown = std::time::Duration::from_secs(30);
    api_config.common.budgets = budgets.clone();
    let api = env.start_api_with(api_config).await;
    let mut worker_config = env.worker_config();
    worker_config.common.budgets = budgets.clone();
    let worker = env.start_worker_with(worker_config).await;

    // Before anything happens, the counters that ratios and alerts read are there at 0,
    // so the first events show in rate() and increase().
    let present_at_zero = |samples: &[Sample], name: &str, labels: &[(&str, &str)]| {
        samples.iter().any(|s| {
            s.name == name
                && s.value == 0.0
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    };
    let (api_start, worker_start) = (
        scrape(&env, &api.metrics_url).await,
        scrape(&env, &worker.metrics_url).await,
    );
    for (name, labels) in [
        ("otp_send_requests_total", &[("outcome", "accepted")][..]),
        ("otp_verify_requests_total", &[("outcome", "verified")]),
        ("otp_whatsapp_delivered_total", &[]),
        (
            "otp_receipts_total",
            &[("event", "delivered"), ("outcome", "applied")],
        ),
        (
            "otp_receipts_total",
            &[("event", "other"), ("outcome", "unknown_send")],
        ),
    ] {
        assert!(
            present_at_zero(&api_start, name, labels),
            "{name} {labels:?} at 0"
        );
    }
    for outcome in ["sent", "failed", "expired", "dropped"] {
        assert!(
            present_at_zero(
                &worker_start,
                "otp_deliveries_total",
                &[("outcome", outcome)]
            ),
            "deliveries {outcome} at 0"
        );
    }

    // One delivery after a transient failure, one rate-limited resend, one wrong
    // guess, one verification, and one permanent failure.
    env.sandbox.script(
        PHONE,
        vec![ScriptedReply {
            status: Some(500),
            ..ScriptedReply::default()
        }],
    );
    env.sandbox.script(
        REFUSED,
        vec![ScriptedReply {
            status: Some(401),
            ..ScriptedReply::default()
        }],
    );
    let sent = env.send_accepted(PHONE).await;
    assert_eq!(env.send_otp(PHONE).await.0, 429);
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(env.verify(PHONE, wrong).await.0, 401);
    assert_eq!(env.verify(PHONE, &code).await.0, 200);
    let refused = env.send_accepted(REFUSED).await;
    env.wait_for_status(&refused, "failed").await;
    env.wait_for_status(&sent, "sent").await;

    let from_api = eventually("the queue gauge to be read", DEADLINE, || async {
        let samples = scrape(&env, &api.metrics_url).await;
        families(&samples)
            .contains("otp_queue_ready_jobs")
            .then_some(samples)
    })
    .await;
    let from_worker = eventually("the in-flight gauge back at 0", DEADLINE, || async {
        let samples = scrape(&env, &worker.metrics_url).await;
        (value(&samples, "otp_jobs_in_flight", &[]) == 0.0).then_some(samples)
    })
    .await;

    let api_expectations: &[Expected] = &[
        ("otp_send_requests_total", &[("outcome", "accepted")], 2.0),
        (
            "otp_send_requests_total",
            &[("outcome", "rate_limited")],
            1.0,
        ),
        (
            "otp_rate_limit_rejections_total",
            &[("scope", "phone")],
            1.0,
        ),
        (
            "otp_verify_requests_total",
            &[("outcome", "invalid_code")],
            1.0,
        ),
        ("otp_verify_requests_total", &[("outcome", "verified")], 1.0),
        (
            "otp_http_request_duration_seconds_count",
            &[
                ("route", "/api/auth/send-otp"),
                ("method", "POST"),
                ("status", "202"),
            ],
            2.0,
        ),
        (
            "otp_http_request_duration_seconds_count",
            &[("route", "/api/auth/send-otp"), ("status", "429")],
            1.0,
        ),
        ("otp_publish_duration_seconds_count", &[], 2.0),
        ("otp_send_capacity", &[], capacity as f64),
        // The webhook is on and sends go through v3.
        ("otp_receipts_linked", &[], 1.0),
        // Two sends admitted (the second counted with the first still waiting, or not).
    ];
    for (name, labels, expected) in api_expectations {
        assert_eq!(
            value(&from_api, name, labels),
            *expected,
            "api {name} {labels:?}"
        );
    }
    let worker_expectations: &[Expected] = &[
        ("otp_deliveries_total", &[("outcome", "sent")], 1.0),
        ("otp_deliveries_total", &[("outcome", "failed")], 1.0),
        (
            "otp_wati_requests_total",
            &[("result", "server_error")],
            1.0,
        ),
        ("otp_wati_requests_total", &[("result", "accepted")], 1.0),
        ("otp_wati_requests_total", &[("result", "auth_failed")], 1.0),
        ("otp_wati_request_duration_seconds_count", &[], 3.0),
        ("otp_wati_retries_total", &[], 1.0),
        ("otp_wati_recipients_total", &[("result", "accepted")], 1.0),
        ("otp_wati_recipients_total", &[("result", "transient")], 1.0),
        ("otp_wati_recipients_total", &[("result", "rejected")], 1.0),
        ("otp_wati_batch_recipients_count", &[], 3.0),
        ("otp_wati_batch_recipients_sum", &[], 3.0),
        ("otp_accepted_to_sent_seconds_count", &[], 1.0),
        (
            "otp_dead_letters_total",
            &[("kind", "permanent_failure")],
            1.0,
        ),
        ("otp_wati_budget_wait_seconds_count", &[], 3.0),
        ("otp_jobs_in_flight", &[], 0.0),
    ];
    for (name, labels, expected) in worker_expectations {
        assert_eq!(
            value(&from_worker, name, labels),
            *expected,
            "worker {name} {labels:?}"
        );
    }
    assert!(families(&from_worker).contains("otp_queue_head_age_seconds"));
    assert!(families(&from_api).contains("otp_send_backlog"));
    // The retry came sooner than the next call slot (102.5 ms at 100 per 10 s).
    assert!(
        value(
            &from_worker,
            "otp_wati_budget_limited_total",
            &[("limit", "calls")]
        ) >= 1.0
    );
    // Histograms carry explicit buckets, not summaries.
    assert!(
        value(
            &from_worker,
            "otp_accepted_to_sent_seconds_bucket",
            &[("le", "300")]
        ) == 1.0
    );
    assert!(
        value(
            &from_api,
            "otp_http_request_duration_seconds_bucket",
            &[("le", "0.001")]
        ) >= 0.0
    );
    assert!(
        from_api
            .iter()
            .any(|s| s.name == "otp_publish_duration_seconds_bucket")
    );
    // No label ever carries a phone or a request id.
    for sample in from_api.iter().chain(&from_worker) {
        for value in sample.labels.values() {
            assert!(!value.contains("98765"), "a phone in {sample:?}");
            assert!(value.len() < 40, "a long label value in {sample:?}");
        }
    }
    let health = env
        .http
        .get(format!("{}/healthz", worker.metrics_url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}
