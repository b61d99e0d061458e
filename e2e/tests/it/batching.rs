//! Batched v3 sends through the whole pipeline (api, RabbitMQ, worker, sandbox): jobs
//! waiting for the same call slot share one call; each recipient of a call ends in its
//! own status; a call that fails as a whole (5xx or timeout) retries exactly its
//! recipients, with the same codes, and nobody else.

use std::collections::BTreeSet;
use std::time::Duration;

use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::{Budgets, WatiApiVersion};
use wati_sandbox::{AnswerShape, CallRecord, ScriptedReply};

const ACCEPTED: &str = "919876543210";
const INVALID: &str = "14155552671";
const ERRORS: &str = "447911123456";
const OMITTED: &str = "61412345678";

/// One call every 1.025 s over all workers, v3, no message limit.
fn one_call_a_second() -> Budgets {
    budgets(WatiApiVersion::V3, 10, 0, 32)
}

/// An api and a worker with `budgets`; the worker's WATI timeout is `timeout`.
async fn started(
    budgets: Budgets,
    timeout: Duration,
) -> (TestEnv, otp_e2e::Running, otp_e2e::Running) {
    let mut env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.common.budgets = budgets.clone();
    let api = env.start_api_with(api_config).await;
    let mut worker_config = env.worker_config();
    worker_config.common.budgets = budgets.clone();
    worker_config.wati.timeout = timeout;
    let worker = env.start_worker_with(worker_config).await;
    (env, api, worker)
}

fn phones(call: &CallRecord) -> BTreeSet<&str> {
    call.recipients.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn a_batch_with_mixed_outcomes_ends_each_send_in_its_own_status() {
    let (env, _api, _worker) = started(one_call_a_second(), Duration::from_secs(2)).await;
    // In WATI's v2 shape, which says in a field of its own that a number is not on
    // WhatsApp (the documented v3 shape has only errors).
    env.sandbox.script(
        INVALID,
        vec![ScriptedReply {
            valid_whatsapp_number: Some(false),
            shape: Some(AnswerShape::Receivers),
            ..ScriptedReply::default()
        }],
    );
    env.sandbox.script(
        ERRORS,
        vec![ScriptedReply {
            errors: Some(vec!["Template param otp missing".into()]),
            ..ScriptedReply::default()
        }],
    );
    env.sandbox.script(
        OMITTED,
        vec![ScriptedReply {
            omit: Some(true),
            ..ScriptedReply::default()
        }],
    );
    // The next call leaves in a second: the four sends wait for it together.
    env.occupy_call_slot(&one_call_a_second()).await;
    let mut ids = Vec::new();
    for phone in [ACCEPTED, INVALID, ERRORS, OMITTED] {
        ids.push(env.send_accepted(phone).await);
    }

    let sent = env.wait_for_status(&ids[0], "sent").await;
    assert_eq!(sent["attempts"], 1);
    let invalid = env.wait_for_status(&ids[1], "failed").await;
    assert_eq!(invalid["reason"], "Not a valid WhatsApp number");
    let errors = env.wait_for_status(&ids[2], "failed").await;
    assert_eq!(errors["reason"], "WATI refused the recipient");
    assert_eq!(errors["info"], "Template param otp missing");
    let omitted = env.wait_for_status(&ids[3], "failed").await;
    assert_eq!(omitted["reason"], "not accepted by WATI");

    let log = env.sandbox.call_log();
    assert_eq!(log.len(), 1, "one call for all four: {log:?}");
    assert_eq!(
        phones(&log[0]),
        BTreeSet::from([ACCEPTED, INVALID, ERRORS, OMITTED])
    );
    // The accepted code works; the refused ones were deleted and dead-lettered.
    let code = env.wait_for_messages(ACCEPTED, 1).await[0].code.clone();
    assert_eq!(env.verify(ACCEPTED, &code).await.0, 200);
    for phone in [INVALID, ERRORS, OMITTED] {
        assert_eq!(env.verify(phone, "123456").await.0, 404, "{phone}");
    }
    let dead = env.queues().dead;
    eventually("three dead letters", DEADLINE, || async {
        (env.queue_counts(&dead).await?.ready == 3).then_some(())
    })
    .await;
}

/// Sends `done` and waits until it is delivered; then sends the three `failing` phones
/// (the first of which is scripted with `failure`) so that they share the next call;
/// checks that the calls after the failed one carry exactly those three, once each
/// with the codes they had, and never `done` again.
async fn a_failed_call_is_retried_for_exactly_its_recipients(
    failure: ScriptedReply,
    timeout: Duration,
) {
    let (env, _api, _worker) = started(one_call_a_second(), timeout).await;
    let done = "919876543299";
    let failing = [ACCEPTED, INVALID, ERRORS];
    let first = env.send_accepted(done).await;
    env.wait_for_status(&first, "sent").await;
    env.sandbox.script(failing[0], vec![failure]);
    let mut ids = Vec::new();
    for phone in failing {
        ids.push(env.send_accepted(phone).await);
    }
    for id in &ids {
        let status = env.wait_for_status(id, "sent").await;
        assert_eq!(status["attempts"], 2, "one failed call, one retry");
    }
    // A call WATI held past the worker's timeout is logged when WATI answers it.
    let log = eventually("every call answered", DEADLINE, || async {
        let log = env.sandbox.call_log();
        (log.len() >= 3 && log.len() as u64 == env.sandbox.arrived()).then_some(log)
    })
    .await;
    assert_eq!(phones(&log[0]), BTreeSet::from([done]));
    assert_eq!(
        phones(&log[1]),
        BTreeSet::from(failing),
        "the call that failed"
    );
    let retried: Vec<&str> = log[2..]
        .iter()
        .flat_map(|call| call.recipients.iter().map(String::as_str))
        .collect();
    let mut sorted = retried.clone();
    sorted.sort_unstable();
    let mut expected = failing.to_vec();
    expected.sort_unstable();
    assert_eq!(
        sorted, expected,
        "exactly the unfinished recipients, once each"
    );
    for phone in failing {
        let calls = env.sandbox.calls(phone);
        assert_eq!(calls.len(), 2, "{phone}");
        assert_eq!(calls[0].code, calls[1].code, "{phone}: the same code");
    }
    assert_eq!(env.sandbox.calls(done).len(), 1);
}

#[tokio::test]
async fn a_5xx_of_a_batch_retries_exactly_its_unfinished_recipients_with_the_same_codes() {
    let failure = ScriptedReply {
        status: Some(500),
        ..ScriptedReply::default()
    };
    a_failed_call_is_retried_for_exactly_its_recipients(failure, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_timeout_of_a_batch_retries_exactly_its_unfinished_recipients_with_the_same_codes() {
    // WATI holds the call for 3 s; the worker gives up on it after 1 s.
    let failure = ScriptedReply {
        delay_ms: Some(3_000),
        ..ScriptedReply::default()
    };
    a_failed_call_is_retried_for_exactly_its_recipients(failure, Duration::from_secs(1)).await;
}
