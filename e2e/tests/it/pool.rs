//! The pool of sending numbers, against the sandbox holding each number to Meta's rate:
//! four numbers share a burst, each within its rate in any second at WATI's side; a
//! number degraded mid-burst is paused and its refused sends go out from the others;
//! with every number paused, send-otp answers 503 and what was accepted is still
//! delivered; v1, one call per code, spreads over the numbers too.

use std::collections::BTreeMap;
use std::time::Duration;

use otp_e2e::{DEADLINE, TestEnv, budgets, busiest_window, eventually};
use otp_shared::budget::{Budgets, WatiApiVersion};
use otp_shared::redis::sender_health::{SenderHealth, Trouble, Unhealthy};
use otp_shared::senders::Senders;
use serde_json::json;
use wati_sandbox::{CallRecord, MessageRates};

const POOL: [&str; 4] = ["15550000001", "15550000002", "15550000003", "15550000004"];

fn phone(n: u32) -> String {
    format!("9198700{n:05}")
}

/// `budgets` with the numbers `pool`, each at `per_second`, first paused for `pause`.
fn pool_budgets(
    version: WatiApiVersion,
    pool: &[&str],
    per_second: u32,
    pause: Duration,
) -> Budgets {
    let mut budgets = budgets(version, 0, per_second, 32);
    budgets.senders = Senders::numbers(pool, per_second);
    budgets.sender_pause = pause;
    budgets
}

/// An api and a worker with `budgets`, the sandbox holding every number to
/// `per_second` and posting receipts to the api.
async fn start(env: &mut TestEnv, budgets: &Budgets, per_second: u32) -> [otp_e2e::Running; 2] {
    let pool: Vec<&str> = budgets
        .senders
        .iter()
        .filter_map(|s| s.number.as_deref())
        .collect();
    env.sandbox.put_templates_on(&pool);
    env.sandbox
        .set_message_rates(MessageRates::every_number(per_second));
    let api = start_api(env, budgets).await;
    env.enable_receipts(
        Duration::from_millis(100),
        Duration::from_secs(60),
        1,
        false,
    );
    let worker = env.start_worker_with(pool_worker(env, budgets)).await;
    [api, worker]
}

/// An api admitting by `budgets`' pool.
async fn start_api(env: &mut TestEnv, budgets: &Budgets) -> otp_e2e::Running {
    let mut api = env.api_config();
    api.common.budgets = budgets.clone();
    env.start_api_with(api).await
}

/// Asks for codes for fresh phones (the `n`th from `first` on) until send-otp answers
/// as `wanted` says; that answer.
async fn until_send_otp(
    env: &TestEnv,
    what: &str,
    first: u32,
    wanted: fn(u16) -> bool,
) -> (u16, serde_json::Value) {
    let mut next = first..;
    eventually(what, DEADLINE, || {
        let phone = phone(next.next().unwrap_or(99_999));
        async move {
            let (status, body) = env.send_otp(&phone).await;
            wanted(status).then_some((status, body))
        }
    })
    .await
}

/// A worker sending from `budgets`' pool; its template check reads each number's list.
fn pool_worker(env: &TestEnv, budgets: &Budgets) -> otp_worker::config::WorkerConfig {
    let mut worker = env.worker_config();
    worker.common.budgets = budgets.clone();
    worker.wati.channel_numbers = budgets.senders.iter().map(|s| s.number.clone()).collect();
    worker
}

/// The sandbox's answered calls, by the number they went from.
fn calls_by_number(env: &TestEnv) -> BTreeMap<String, Vec<CallRecord>> {
    let mut by_number: BTreeMap<String, Vec<CallRecord>> = BTreeMap::new();
    for call in env.sandbox.call_log() {
        if call.status == 200 {
            let number = call.channel_number.clone().unwrap_or_default();
            by_number.entry(number).or_default().push(call);
        }
    }
    by_number
}

/// WATI's receipt of Meta refusing the message `message_id` of send `request_id` to
/// `phone` for its number's spam limit (131048).
fn spam_refusal(request_id: &str, phone: &str, message_id: &str) -> serde_json::Value {
    json!({
        "eventType": "templateMessageFailed",
        "localMessageId": request_id,
        "whatsappMessageId": message_id,
        "waId": phone,
        "failedCode": "131048",
        "failedDetail": "Spam rate limit hit",
        "timestamp": (otp_shared::now_ms() / 1000).to_string(),
    })
}

async fn accept_all(env: &TestEnv, phones: std::ops::Range<u32>) -> Vec<String> {
    let mut request_ids = Vec::new();
    for n in phones {
        request_ids.push(env.send_accepted(&phone(n)).await);
    }
    request_ids
}

#[tokio::test]
async fn four_numbers_share_a_burst_each_within_its_rate_in_any_second_at_watis_side() {
    let mut env = TestEnv::new().await;
    let per_second = 10;
    let budgets = pool_budgets(
        WatiApiVersion::V3,
        &POOL,
        per_second,
        Duration::from_secs(30),
    );
    let _running = start(&mut env, &budgets, per_second).await;

    let request_ids = accept_all(&env, 0..120).await;
    for request_id in &request_ids {
        env.wait_for_status(request_id, "delivered").await;
    }

    let stats = env.sandbox.number_stats();
    for number in POOL {
        let stats = stats.get(number).expect("every number sent");
        assert!(stats.failed.is_empty(), "{number} failed some: {stats:?}");
        // Spread by free budget: each number carried a fair share.
        assert!(stats.accepted >= 20, "{number} sent {}", stats.accepted);
    }
    assert_eq!(stats.values().map(|s| s.accepted).sum::<u64>(), 120);
    assert!(
        !stats.contains_key("default"),
        "a call without channel_number"
    );
    for (number, calls) in calls_by_number(&env) {
        let busiest = busiest_window(&calls, 1_000, |c| c.recipients.len());
        assert!(
            busiest <= per_second as usize,
            "{number}: {busiest} recipients within 1 s at WATI's side"
        );
    }
}

#[tokio::test]
async fn a_number_degraded_mid_burst_is_paused_and_its_refused_sends_go_out_from_the_others() {
    let mut env = TestEnv::new().await;
    let per_second = 10;
    let budgets = pool_budgets(
        WatiApiVersion::V3,
        &POOL,
        per_second,
        Duration::from_secs(60),
    );
    let _running = start(&mut env, &budgets, per_second).await;
    let degraded = POOL[0];

    let mut request_ids = accept_all(&env, 0..30).await;
    env.sandbox
        .degrade_number(degraded, std::time::Instant::now());
    request_ids.extend(accept_all(&env, 30..120).await);

    // Every send is delivered: those Meta refused from the degraded number went out
    // again from another.
    for request_id in &request_ids {
        env.wait_for_status(request_id, "delivered").await;
    }
    let stats = env.sandbox.number_stats();
    let refused = stats[degraded].failed.get("131048").copied().unwrap_or(0);
    assert!(refused >= 1, "the degraded number sent nothing: {stats:?}");
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_secs(60));
    let states = health.unhealthy(otp_shared::now_ms()).await.expect("redis");
    assert!(
        matches!(states.get(degraded), Some(Unhealthy::PausedUntil(_))),
        "{states:?}"
    );
    assert_eq!(states.len(), 1, "only the degraded number is paused");
    // Once paused, it sends nothing more: its refusals are those of the calls that
    // left before the first refusal came back.
    assert!(
        refused < 40,
        "{refused} refused: the pause did not hold the number"
    );
    // Each phone asked after the number degraded has its code from a healthy number,
    // and it logs in.
    for n in 30..120 {
        let messages = env.sandbox.messages(&phone(n));
        let last = messages.last().expect("a message reached the phone");
        assert_ne!(last.from.as_deref(), Some(degraded), "{}", phone(n));
    }
    let last = env.sandbox.messages(&phone(37));
    let code = last.last().expect("a message").code.clone();
    let (status, body) = env.verify(&phone(37), &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn with_every_number_paused_send_otp_answers_503_and_nothing_accepted_is_lost() {
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let per_second = 10;
    let budgets = pool_budgets(WatiApiVersion::V3, pool, per_second, Duration::from_secs(3));
    env.sandbox.put_templates_on(pool);
    env.sandbox
        .set_message_rates(MessageRates::every_number(per_second));
    let _api = start_api(&mut env, &budgets).await;
    env.enable_receipts(
        Duration::from_millis(100),
        Duration::from_secs(60),
        1,
        false,
    );

    // Accepted while the pool was healthy; no worker yet.
    let request_ids = accept_all(&env, 0..6).await;
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_secs(3));
    for number in pool {
        health
            .report(number, Trouble::Limit, otp_shared::now_ms(), per_second)
            .await
            .expect("redis");
    }
    let (status, body) = until_send_otp(&env, "send-otp refused with 503", 50, |s| s != 202).await;
    assert_eq!(status, 503, "{body}");

    let _worker = env.start_worker_with(pool_worker(&env, &budgets)).await;
    // The pauses end, each number proves itself with a probe, and every send accepted
    // before is delivered.
    for request_id in &request_ids {
        env.wait_for_status(request_id, "delivered").await;
    }
    until_send_otp(&env, "send-otp accepted again", 1_000, |s| s == 202).await;
    let calls = env.sandbox.call_log();
    let first = calls.first().expect("a call");
    assert_eq!(
        first.recipients.len(),
        1,
        "the first call after a pause is a probe"
    );
}

#[tokio::test]
async fn v1_with_several_numbers_spreads_one_call_per_code() {
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let per_second = 5;
    let budgets = pool_budgets(
        WatiApiVersion::V1,
        pool,
        per_second,
        Duration::from_secs(30),
    );
    let _running = start(&mut env, &budgets, per_second).await;

    let request_ids = accept_all(&env, 0..20).await;
    for request_id in &request_ids {
        env.wait_for_status(request_id, "delivered").await;
    }
    let by_number = calls_by_number(&env);
    for number in pool {
        let calls = by_number.get(*number).map_or(&[][..], Vec::as_slice);
        assert!(calls.len() >= 5, "{number}: {} calls", calls.len());
        assert!(calls.iter().all(|c| c.recipients.len() == 1));
        assert!(busiest_window(calls, 1_000, |c| c.recipients.len()) <= per_second as usize);
    }
    assert_eq!(by_number.values().map(Vec::len).sum::<usize>(), 20);
    assert!(
        env.sandbox
            .number_stats()
            .values()
            .all(|s| s.failed.is_empty())
    );
    assert!(
        env.sandbox
            .number_stats()
            .values()
            .all(|s| s.failed.is_empty())
    );
}

#[tokio::test]
async fn a_refusal_for_the_numbers_trouble_queues_the_send_again_counted_and_it_goes_from_another()
{
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let budgets = pool_budgets(WatiApiVersion::V3, pool, 10, Duration::from_secs(60));
    env.sandbox.put_templates_on(pool);
    let _api = start_api(&mut env, &budgets).await;
    let worker = env.start_worker_with(pool_worker(&env, &budgets)).await;
    let phone = phone(1);
    let request_id = env.send_accepted(&phone).await;
    env.wait_for_status(&request_id, "sent").await;
    worker.stop().await;
    let first = env.sandbox.messages(&phone);
    let from = first[0].from.clone().expect("a number of the pool");

    // Meta refused it for its number's spam limit.
    let failed = spam_refusal(&request_id, &phone, "wamid.refused");
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &failed).await.0,
        200
    );
    // Not failed: queued again, counted by admission, its job on the queue, and the
    // number paused.
    env.wait_for_status(&request_id, "queued").await;
    let counted: Option<f64> = redis::cmd("ZSCORE")
        .arg(env.keys().pending_sends())
        .arg(&request_id)
        .query_async(&mut env.redis.clone())
        .await
        .expect("redis");
    assert!(
        counted.is_some(),
        "the rerouted send is not in the admission count"
    );
    let job = String::from_utf8_lossy(&env.peek_send_queue().await).into_owned();
    assert!(job.contains(&request_id), "{job}");
    // WATI repeats the refusal while the send still waits (its first publishing may
    // have failed): the job is published again; the copies send it once.
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &failed).await.0,
        200
    );
    let queued = env
        .queue_counts(&env.queues().send)
        .await
        .expect("the send queue");
    assert_eq!(queued.ready, 2, "{queued:?}");
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_secs(60));
    let states = health.unhealthy(otp_shared::now_ms()).await.expect("redis");
    assert!(
        matches!(states.get(&from), Some(Unhealthy::PausedUntil(_))),
        "{states:?}"
    );

    // The next worker sends it from the other number, the same code.
    let _worker = env.start_worker_with(pool_worker(&env, &budgets)).await;
    env.wait_for_status(&request_id, "sent").await;
    let messages = env.wait_for_messages(&phone, 2).await;
    assert_ne!(messages[1].from, messages[0].from);
    assert_eq!(messages[1].code, messages[0].code);
    // A repeat of the refusal (WATI repeats itself) changes nothing: the new message
    // is another.
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &failed).await.0,
        200
    );
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status["status"], "sent", "{status}");
    assert_eq!(env.sandbox.messages(&phone).len(), 2);
}

#[tokio::test]
async fn with_sms_on_a_refusal_for_the_numbers_trouble_goes_from_another_number_not_by_sms() {
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let budgets = pool_budgets(WatiApiVersion::V3, pool, 10, Duration::from_secs(60));
    env.sandbox.put_templates_on(pool);
    // SMS may go to the test phones' country, and would carry a failed code at once.
    let _api = env
        .start_sms_api_with("91", &[], |api| api.common.budgets = budgets.clone())
        .await;
    env.enable_receipts(
        Duration::from_millis(100),
        Duration::from_secs(60),
        1,
        false,
    );
    let mut worker = env.sms_worker_config("91", Duration::ZERO);
    worker.common.budgets = budgets.clone();
    worker.wati.channel_numbers = budgets.senders.iter().map(|s| s.number.clone()).collect();
    let _worker = env.start_worker_with(worker).await;
    // The pool's first number (the one a call goes from when both have room) is in
    // trouble from the start.
    env.sandbox
        .degrade_number(pool[0], std::time::Instant::now());

    let request_ids = accept_all(&env, 200..206).await;
    for request_id in &request_ids {
        env.wait_for_status(request_id, "delivered").await;
    }
    let refused = env.sandbox.number_stats()[pool[0]]
        .failed
        .get("131048")
        .copied()
        .unwrap_or(0);
    assert!(refused >= 1, "nothing went from the degraded number");
    for n in 200..206 {
        let messages = env.sandbox.messages(&phone(n));
        assert_eq!(
            messages.last().and_then(|m| m.from.as_deref()),
            Some(pool[1]),
            "{}",
            phone(n)
        );
        assert!(
            env.sandbox.sms_messages(&phone(n)).is_empty(),
            "an SMS went to {}",
            phone(n)
        );
    }
}

#[tokio::test]
async fn a_refusal_that_comes_before_the_worker_recorded_its_send_is_a_plain_failure() {
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let budgets = pool_budgets(WatiApiVersion::V3, pool, 10, Duration::from_secs(60));
    let _api = start_api(&mut env, &budgets).await;
    // No worker: the send is still queued when the refusal comes (a worker recording it
    // would mark it delivered after a reroute, and the republished copy be dropped).
    let phone = phone(300);
    let request_id = env.send_accepted(&phone).await;
    let failed = spam_refusal(&request_id, &phone, "wamid.early");
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &failed).await.0,
        200
    );
    let status = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(status["failedCode"], "131048");
    // Without SMS its code is retired, as any failure's.
    assert_eq!(env.verify(&phone, "123456").await.0, 404);
}

#[tokio::test]
async fn a_number_back_from_its_pause_is_admitted_for_its_probes_with_nothing_waiting() {
    let mut env = TestEnv::new().await;
    let budgets = pool_budgets(WatiApiVersion::V3, &POOL[..1], 10, Duration::from_secs(2));
    let _api = start_api(&mut env, &budgets).await;
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_secs(2));
    health
        .report(POOL[0], Trouble::Limit, otp_shared::now_ms(), 10)
        .await
        .expect("redis");
    until_send_otp(
        &env,
        "send-otp refused while the only number is paused",
        400,
        |s| s == 503,
    )
    .await;
    // Nothing waits to be sent, so no probe could leave if admission still counted the
    // number as paused: it must admit the sends its probes are made of.
    until_send_otp(&env, "send-otp accepted once the pause is over", 500, |s| {
        s == 202
    })
    .await;
    let states = health.unhealthy(otp_shared::now_ms()).await.expect("redis");
    assert_eq!(states.get(POOL[0]), Some(&Unhealthy::Probing));
}

#[tokio::test]
async fn a_refusal_that_comes_while_the_call_is_in_the_air_still_pauses_its_number() {
    let mut env = TestEnv::new().await;
    let pool = &POOL[..2];
    let budgets = pool_budgets(WatiApiVersion::V3, pool, 10, Duration::from_secs(60));
    env.sandbox.put_templates_on(pool);
    let _api = start_api(&mut env, &budgets).await;
    let _worker = env.start_worker_with(pool_worker(&env, &budgets)).await;
    let phone = phone(600);
    // WATI takes 3 s to answer the call: Meta's refusal comes first.
    env.sandbox.script(
        &phone,
        vec![wati_sandbox::ScriptedReply {
            delay_ms: Some(3_000),
            ..Default::default()
        }],
    );
    let request_id = env.send_accepted(&phone).await;
    let status_key = env.keys().status(
        &otp_shared::phone::PhoneNumber::from_e164_digits(&phone).expect("a phone"),
        request_id.parse().expect("a uuid"),
    );
    // The number is in the send's status as the call leaves, before WATI answers.
    let sender: String = eventually("the call's number in the status", DEADLINE, || {
        let mut redis = env.redis.clone();
        let key = status_key.clone();
        async move {
            redis::cmd("HGET")
                .arg(&key)
                .arg("sender")
                .query_async::<Option<String>>(&mut redis)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_ne!(status["status"], "sent", "WATI answered already: {status}");
    let failed = spam_refusal(&request_id, &phone, "wamid.in-the-air");
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &failed).await.0,
        200
    );
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_secs(60));
    let states = health.unhealthy(otp_shared::now_ms()).await.expect("redis");
    assert!(
        matches!(states.get(&sender), Some(Unhealthy::PausedUntil(_))),
        "{sender}: {states:?}"
    );
}

#[tokio::test]
async fn only_a_probe_sent_after_the_last_pause_began_puts_the_number_back_to_work() {
    let env = TestEnv::new().await;
    let health = SenderHealth::new(env.redis.clone(), &env.keys(), Duration::from_millis(300));
    let number = "15550000001";
    let now = otp_shared::now_ms();
    // A probe of an earlier pause is still out when the number is paused again.
    let old_probe_left_at = now - 1_000;
    let reported = health
        .report(number, Trouble::Limit, now, 1000)
        .await
        .expect("report");
    assert!(
        matches!(
            reported,
            otp_shared::redis::sender_health::Reported::Paused(_)
        ),
        "{reported:?}"
    );
    let probing = || async {
        let states = health
            .unhealthy(otp_shared::now_ms())
            .await
            .expect("states");
        (states.get(number) == Some(&Unhealthy::Probing)).then_some(())
    };
    eventually("the pause to end in probing", DEADLINE, probing).await;
    // Its late receipt says nothing of the trouble that paused the number since.
    let cleared = health
        .probe_delivered(number, old_probe_left_at)
        .await
        .expect("probe");
    assert!(!cleared);
    assert_eq!(probing().await, Some(()), "still probing");
    // A probe of this pause that was delivered puts it back to work.
    let cleared = health
        .probe_delivered(number, otp_shared::now_ms())
        .await
        .expect("probe");
    assert!(cleared);
    let states = health
        .unhealthy(otp_shared::now_ms())
        .await
        .expect("states");
    assert!(!states.contains_key(number), "{states:?}");
}
