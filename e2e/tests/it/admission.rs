//! A 202 is a promise: a burst far above what the WATI budgets can deliver within a
//! code's life is admitted only up to that capacity, at once and atomically across
//! requests, and every admitted code reaches WATI before it expires. The rest get 503
//! with Retry-After, a re-send counts with what is left of its code's life, and room
//! comes back as sends finish.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use otp_api::store::SendKind;
use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::{Budgets, Capacity, WatiApiVersion};
use otp_shared::redis::admission::Reservation;
use serde_json::{Value, json};

fn phone(n: usize) -> String {
    format!("91987654{n:04}")
}

/// One answer of the burst.
struct Answer {
    phone: String,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
    /// When the answer came back, Unix ms: the code was stored before it.
    answered_at_ms: u64,
}

/// `count` send-otp requests for distinct phones, 64 at a time; how long they took.
async fn burst(env: &TestEnv, count: usize) -> (Vec<Answer>, Duration) {
    let started = Instant::now();
    let answers = futures_util::stream::iter(0..count)
        .map(|n| async move {
            let response = env
                .http
                .post(format!("{}/api/auth/send-otp", env.api_url))
                .json(&json!({ "phone": phone(n) }))
                .send()
                .await
                .expect("api reachable");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            Answer {
                phone: phone(n),
                status,
                retry_after,
                answered_at_ms: otp_shared::now_ms(),
                body: response.json().await.unwrap_or(Value::Null),
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    (answers, started.elapsed())
}

fn sends(budgets: &Budgets, ttl_seconds: u64) -> usize {
    match budgets.capacity(Duration::from_secs(ttl_seconds)) {
        Capacity::Sends { sends, .. } => sends as usize,
        Capacity::Unlimited => panic!("these tests need a budget"),
    }
}

/// The room new codes of `ttl_seconds` get with the tests' cooldown (none): a code's
/// life less the re-sends' reserve.
fn new_code_room(budgets: &Budgets, ttl_seconds: u64) -> usize {
    let ttl = Duration::from_secs(ttl_seconds);
    let reserve = otp_shared::redis::admission::reserve_for(ttl, Duration::ZERO);
    match budgets.capacity(ttl - reserve) {
        Capacity::Sends { sends, .. } => sends as usize,
        Capacity::Unlimited => panic!("these tests need a budget"),
    }
}

/// Runs the burst with no worker (so nothing is handed over while it arrives), checks
/// that exactly the capacity was admitted and the rest refused properly, then starts
/// `workers` workers and checks that every admitted code reached WATI before it expired.
async fn burst_then_deliver(budgets: Budgets, ttl_seconds: u64, requests: usize, workers: usize) {
    let mut env = TestEnv::with_wati_limit(budgets.calls_per_10s).await;
    let mut api_config = env.api_config();
    api_config.common.otp_ttl = std::time::Duration::from_secs(ttl_seconds);
    api_config.common.budgets = budgets.clone();
    let _api = env.start_api_with(api_config).await;
    // New codes leave room to re-sends.
    let capacity = new_code_room(&budgets, ttl_seconds);
    assert!(capacity * 3 < requests, "the burst is far above capacity");

    // Each request reserves atomically, so the count holds however fast the burst
    // comes; it comes in a fraction of a second here (printed, not asserted: a loaded
    // machine is slower, and nothing reads the queue periodically any more).
    let (answers, took) = burst(&env, requests).await;
    println!("{requests} requests in {took:?}");
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    assert_eq!(admitted.len(), capacity, "202s up to capacity, no more");
    for refused in answers.iter().filter(|a| a.status != 202) {
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.body["code"], "UNAVAILABLE");
        assert_eq!(refused.body["message"], "Failed to send OTP");
        let wait = refused.retry_after.expect("Retry-After on a 503");
        assert!(wait >= 1 && wait <= ttl_seconds * 4, "Retry-After {wait}");
        assert_eq!(refused.body["retryAfterSeconds"], wait);
    }

    // A refusal takes back the code it stored: nothing is left to verify.
    let refused = answers.iter().find(|a| a.status == 503).expect("a refusal");
    assert_eq!(env.verify(&refused.phone, "123456").await.0, 404);

    let mut running = Vec::new();
    for _ in 0..workers {
        running.push(
            env.start_worker_with(worker_config(&env, budgets.clone()))
                .await,
        );
    }
    every_admitted_code_reaches_wati_in_time(&env, &admitted, ttl_seconds).await;
    for refused in answers.iter().filter(|a| a.status != 202) {
        assert!(env.sandbox.messages(&refused.phone).is_empty());
    }
}

fn worker_config(env: &TestEnv, budgets: Budgets) -> otp_worker::config::WorkerConfig {
    let mut config = env.worker_config();
    config.common.budgets = budgets.clone();
    config.wati.api_version = budgets.api_version;
    config.concurrency = u16::try_from(budgets.recipients_per_call * 2).expect("fits");
    config
}

async fn every_admitted_code_reaches_wati_in_time(
    env: &TestEnv,
    admitted: &[&Answer],
    ttl_seconds: u64,
) {
    for answer in admitted {
        let messages = env.wait_for_messages(&answer.phone, 1).await;
        assert_eq!(messages.len(), 1, "{}: delivered once", answer.phone);
        let expiry = answer.answered_at_ms + ttl_seconds * 1000;
        assert!(
            messages[0].received_at_ms < expiry,
            "{} reached WATI {} ms after its code expired",
            answer.phone,
            messages[0].received_at_ms - expiry
        );
        let request_id = answer.body["requestId"].as_str().expect("a request id");
        env.wait_for_status(request_id, "sent").await;
    }
    assert_eq!(env.sandbox.rate_limited(), 0, "WATI never answered 429");
}

#[tokio::test]
async fn a_burst_far_above_the_message_budget_is_admitted_only_as_far_as_it_delivers_in_time() {
    // 10 messages a second and 10 s codes: 76 sends fit (a second's margin, the
    // message window of the second before, and each second counted as 1.05 s).
    let budgets = budgets(WatiApiVersion::V3, 100, 10, 1000);
    assert_eq!(sends(&budgets, 10), 76);
    burst_then_deliver(budgets, 10, 400, 1).await;
}

#[tokio::test]
async fn a_burst_far_above_the_call_budget_is_admitted_only_as_far_as_half_full_calls_deliver() {
    // 10 calls per 10 s (one every 1.025 s), 8 recipients a call, no message limit, 10 s
    // codes: 9 s usable hold 8 slots, one of which may be taken, each counted half full.
    // Two workers split the jobs, so calls carry what each holds, a lone job at once.
    let budgets = budgets(WatiApiVersion::V3, 10, 0, 8);
    assert_eq!(sends(&budgets, 10), 28);
    burst_then_deliver(budgets, 10, 200, 2).await;
}

#[tokio::test]
async fn in_v1_mode_the_call_budget_bounds_admission_the_same_way() {
    // One call per code, 20 calls per 10 s (one every 512.5 ms), 6 s codes: 8 fit.
    let budgets = budgets(WatiApiVersion::V1, 20, 0, 1000);
    assert_eq!(sends(&budgets, 6), 8);
    burst_then_deliver(budgets, 6, 60, 1).await;
}

#[tokio::test]
async fn with_the_worker_delivering_during_the_burst_every_202_still_arrives_in_time() {
    let budgets = budgets(WatiApiVersion::V3, 100, 10, 1000);
    let mut env = TestEnv::with_wati_limit(100).await;
    let mut api_config = env.api_config();
    api_config.common.otp_ttl = std::time::Duration::from_secs(10);
    api_config.common.budgets = budgets.clone();
    let _api = env.start_api_with(api_config).await;
    let _worker = env
        .start_worker_with(worker_config(&env, budgets.clone()))
        .await;
    let (answers, _) = burst(&env, 400).await;
    let delivered_meanwhile = env.sandbox.accepted() as usize;
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    // Room comes back only as sends finish (and WATI has them before they finish).
    let capacity = new_code_room(&budgets, 10);
    assert!(
        admitted.len() >= capacity && admitted.len() <= capacity + delivered_meanwhile,
        "{} admitted, capacity {capacity}, {delivered_meanwhile} delivered meanwhile",
        admitted.len()
    );
    every_admitted_code_reaches_wati_in_time(&env, &admitted, 10).await;
}

#[tokio::test]
async fn a_re_send_is_admitted_only_if_its_code_lives_long_enough_for_the_sends_ahead() {
    let env = TestEnv::new().await;
    // 10 messages a second: a 10 s life fits 80, a 4 s life fits 20.
    let budgets = budgets(WatiApiVersion::V3, 0, 10, 1000);
    let admission = otp_shared::redis::admission::Admission::new(
        env.redis.clone(),
        &env.keys(),
        &budgets,
        Duration::from_secs(10),
        Duration::from_secs(1),
        otp_shared::redis::sender_health::PoolView::default(),
    );
    let reserve = |life| admission.reserve(uuid::Uuid::new_v4(), life, SendKind::Resend);
    for _ in 0..30 {
        assert_eq!(
            reserve(Duration::from_secs(10)).await.expect("redis"),
            Reservation::Admitted
        );
    }
    // A re-send whose code has 4 s left could not reach WATI behind the 30 ahead of it.
    let refused = reserve(Duration::from_secs(4)).await.expect("redis");
    assert!(
        matches!(refused, Reservation::Full { retry_after } if retry_after >= Duration::from_secs(1)),
        "{refused:?}"
    );
    // A code with a whole life still fits, and one with under 2 s never does.
    assert_eq!(
        reserve(Duration::from_secs(10)).await.expect("redis"),
        Reservation::Admitted
    );
    let too_short = reserve(Duration::from_millis(1_500)).await.expect("redis");
    assert!(
        matches!(too_short, Reservation::Full { .. }),
        "{too_short:?}"
    );
}

#[tokio::test]
async fn room_comes_back_as_sends_are_handed_to_wati() {
    let mut env = TestEnv::new().await;
    let budgets = budgets(WatiApiVersion::V1, 20, 0, 1000);
    let mut api_config = env.api_config();
    api_config.common.otp_ttl = std::time::Duration::from_secs(6);
    api_config.common.budgets = budgets.clone();
    let _api = env.start_api_with(api_config).await;
    let (answers, _) = burst(&env, 20).await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 202).count(),
        new_code_room(&budgets, 6)
    );

    let mut worker_config = env.worker_config();
    worker_config.common.budgets = budgets.clone();
    worker_config.wati.api_version = WatiApiVersion::V1;
    let _worker = env.start_worker_with(worker_config).await;
    eventually("send-otp to admit again", DEADLINE, || async {
        (env.send_otp(&phone(999)).await.0 == 202).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_send_refused_by_a_phone_limit_takes_no_room() {
    let mut env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.common.budgets = budgets(WatiApiVersion::V3, 30, 80, 1000);
    api_config.limits.resend_cooldown = std::time::Duration::from_secs(30);
    let _api = env.start_api_with(api_config).await;
    let pending = || async {
        let count: u64 = redis::cmd("ZCARD")
            .arg(env.keys().pending_sends())
            .query_async(&mut env.redis.clone())
            .await
            .expect("read the pending sends");
        count
    };
    env.send_accepted(&phone(1)).await;
    assert_eq!(pending().await, 1);
    // The cooldown refuses the second send before any room is reserved for it.
    assert_eq!(env.send_otp(&phone(1)).await.0, 429);
    assert_eq!(pending().await, 1);
}

#[tokio::test]
async fn re_sends_after_the_real_cooldown_get_the_room_new_codes_leave_but_not_of_codes_received() {
    let mut env = TestEnv::new().await;
    // 2 messages a second, 60 s codes, a 5 s cooldown: re-sends keep 10 s of room (twice
    // the cooldown, over a tenth of the life).
    let budgets = budgets(WatiApiVersion::V3, 0, 2, 1000);
    let cooldown = Duration::from_secs(5);
    let reserve = otp_shared::redis::admission::reserve_for(Duration::from_secs(60), cooldown);
    assert_eq!(reserve, Duration::from_secs(10));
    let mut api_config = env.api_config();
    api_config.common.otp_ttl = Duration::from_secs(60);
    api_config.common.budgets = budgets.clone();
    api_config.limits.resend_cooldown = cooldown;
    let _api = env.start_api_with(api_config).await;
    let (answers, _) = burst(&env, 150).await;
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    let new_codes = admitted.len();
    assert!(
        new_codes < sends(&budgets, 60) && new_codes > 50,
        "{new_codes}"
    );
    // One of the pending codes was delivered: its phone has it.
    let received = &admitted[0];
    let delivered = serde_json::json!({
        "eventType": "sentMessageDELIVERED_v2",
        "localMessageId": received.body["requestId"],
        "waId": received.phone,
        "timestamp": (otp_shared::now_ms() / 1000).to_string(),
    });
    assert_eq!(
        env.post_receipt(otp_e2e::WEBHOOK_SECRET, &delivered)
            .await
            .0,
        200
    );
    // A flood of new numbers is refused...
    assert_eq!(env.send_otp(&phone(999)).await.0, 503);
    // ...but once the real cooldown is over, users whose code has not come get through
    // in the room new codes left (before, a re-send after the cooldown had as little
    // room as the new codes took, and got a 503 whenever they did).
    let waiting = &admitted[1];
    let status = eventually("the cooldown to pass", DEADLINE, || async {
        let status = env.send_otp(&waiting.phone).await.0;
        (status != 429).then_some(status)
    })
    .await;
    assert_eq!(status, 202, "a re-send of a code that has not come");
    // A re-send of a code the phone already received is no such user: it counts as a
    // new code, and the reserve is not its to take.
    let status = eventually("its cooldown to pass", DEADLINE, || async {
        let status = env.send_otp(&received.phone).await.0;
        (status != 429).then_some(status)
    })
    .await;
    assert_eq!(status, 503, "a re-send of a code the phone has");
}
