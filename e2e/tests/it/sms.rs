//! SMS through Twilio (the sandbox's), end to end: the api, a worker with SMS on, the real
//! Redis and RabbitMQ. Each fallback trigger sends the same code by SMS once, and never
//! twice when two triggers meet; a code delivered in time, or to a country without SMS,
//! goes by no SMS; the app's `channel: "sms"`; Twilio's signed status callbacks; Twilio's
//! refusals and transient answers; the timer across a worker restart.

use std::time::Duration;

use otp_e2e::prometheus::value;
use otp_e2e::proxy::Proxy;
use otp_e2e::{DEADLINE, Running, TestEnv, budgets, eventually, twilio_callback_url};
use otp_shared::budget::WatiApiVersion;
use otp_shared::job::SendJob;
use otp_shared::phone::PhoneNumber;
use otp_shared::redis::fallback_timers::{Claim, FallbackTimers, RunOut};
use serde_json::{Value, json};
use wati_sandbox::{ScriptedReply, ScriptedSms, SmsOutcome};

/// SMS goes to the United Kingdom only.
const SMS_COUNTRIES: &str = "44";
const UK_PHONE: &str = "447911123456";
/// A country without SMS.
const INDIA_PHONE: &str = "919876543210";

/// An api and a worker with SMS on, receipts on (delivered after 50 ms, read not within
/// a test, so that `delivered` is a status that stays), and the fallback timer at
/// `fallback_after`.
async fn sms_env(fallback_after: Duration) -> (TestEnv, Running, Running) {
    sms_env_with(fallback_after, |_| {}).await
}

/// [`sms_env`], the worker's settings changed by `change`.
async fn sms_env_with(
    fallback_after: Duration,
    change: impl FnOnce(&mut otp_worker::config::WorkerConfig),
) -> (TestEnv, Running, Running) {
    let mut env = TestEnv::new().await;
    let api = env.start_sms_api(SMS_COUNTRIES, &[]).await;
    env.enable_receipts(
        Duration::from_millis(50),
        Duration::from_secs(3600),
        1,
        false,
    );
    let mut config = env.sms_worker_config(SMS_COUNTRIES, fallback_after);
    change(&mut config);
    let worker = env.start_worker_with(config).await;
    (env, api, worker)
}

/// WATI accepts `phone`'s next message, and WhatsApp fails it with `code`.
fn whatsapp_fails(env: &TestEnv, phone: &str, code: &str) {
    script_whatsapp(
        env,
        phone,
        ScriptedReply {
            failed_code: Some(code.into()),
            ..ScriptedReply::default()
        },
    );
}

/// WATI accepts `phone`'s next message, and no receipt of it comes.
fn whatsapp_is_silent(env: &TestEnv, phone: &str) {
    script_whatsapp(
        env,
        phone,
        ScriptedReply {
            no_receipts: Some(true),
            ..ScriptedReply::default()
        },
    );
}

/// WATI says `phone` is not on WhatsApp.
fn not_on_whatsapp(env: &TestEnv, phone: &str) {
    script_whatsapp(
        env,
        phone,
        ScriptedReply {
            valid_whatsapp_number: Some(false),
            ..ScriptedReply::default()
        },
    );
}

fn script_whatsapp(env: &TestEnv, phone: &str, reply: ScriptedReply) {
    env.sandbox.script(phone, vec![reply]);
}

/// The code an SMS carries: the digits it starts with (`SMS_TEXT`'s default).
fn code_in(text: &str) -> String {
    text.chars().take_while(char::is_ascii_digit).collect()
}

/// Waits for `count` SMS to `phone`; returns them all.
async fn wait_for_sms(env: &TestEnv, phone: &str, count: usize) -> Vec<wati_sandbox::Message> {
    eventually(&format!("{count} SMS to {phone}"), DEADLINE, || async {
        let messages = env.sandbox.sms_messages(phone);
        (messages.len() >= count).then_some(messages)
    })
    .await
}

/// The send's status once its delivery on `channel` has reached `status`.
async fn wait_for_delivery(env: &TestEnv, request_id: &str, channel: &str, status: &str) -> Value {
    eventually(
        &format!("the {channel} delivery of {request_id} to be {status}"),
        DEADLINE,
        || async {
            let (code, body) = env
                .get(&format!("/api/auth/otp-status/{request_id}"), None)
                .await;
            let reached = code == 200
                && body["deliveries"].as_array().is_some_and(|deliveries| {
                    deliveries
                        .iter()
                        .any(|d| d["channel"] == channel && d["status"] == status)
                });
            reached.then_some(body)
        },
    )
    .await
}

/// The fallback timers set and not yet checked, each with when it runs out (Unix ms).
async fn timers(env: &TestEnv) -> Vec<(String, u64)> {
    redis::cmd("ZRANGE")
        .arg(env.keys().fallback_timers())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut env.redis.clone())
        .await
        .expect("the fallback timers")
}

/// Waits until no fallback timer of this test is set, then stops the worker (which
/// finishes any check it was doing).
async fn timers_checked(env: &TestEnv, worker: Running) {
    eventually("the fallback timers to run out", DEADLINE, || async {
        timers(env).await.is_empty().then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn a_number_not_on_whatsapp_gets_its_code_by_sms_once_and_it_logs_in() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    not_on_whatsapp(&env, UK_PHONE);
    let request_id = env.send_accepted(&format!("+{UK_PHONE}")).await;
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    let status = wait_for_delivery(&env, &request_id, "sms", "delivered").await;
    assert_eq!(status["channel"], "sms");
    assert_eq!(status["status"], "delivered");
    let deliveries = status["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 2, "{status}");
    assert_eq!(deliveries[0]["channel"], "whatsapp");
    assert_eq!(deliveries[0]["status"], "failed");
    assert!(
        env.sandbox.messages(UK_PHONE).is_empty(),
        "nothing went by WhatsApp"
    );
    let code = code_in(&sms[0].text);
    assert_eq!(code.len(), 6, "{}", sms[0].text);
    let (verified, body) = env.verify(&format!("+{UK_PHONE}"), &code).await;
    assert_eq!(verified, 200, "{body}");
    assert_eq!(env.sandbox.sms_calls(UK_PHONE).len(), 1);
}

#[tokio::test]
async fn a_failure_receipt_sends_the_same_code_by_sms() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    whatsapp_fails(&env, UK_PHONE, "131026");
    let request_id = env.send_accepted(UK_PHONE).await;
    let whatsapp = env.wait_for_messages(UK_PHONE, 1).await;
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    assert_eq!(code_in(&sms[0].text), whatsapp[0].code, "the same code");
    let status = wait_for_delivery(&env, &request_id, "sms", "delivered").await;
    let deliveries = status["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries[0]["status"], "failed");
    assert_eq!(deliveries[0]["failedCode"], "131026");
    let (verified, body) = env.verify(UK_PHONE, &whatsapp[0].code).await;
    assert_eq!(verified, 200, "{body}");
}

#[tokio::test]
async fn no_receipt_in_time_sends_the_same_code_by_sms() {
    let (env, _api, _worker) = sms_env(Duration::from_secs(1)).await;
    whatsapp_is_silent(&env, UK_PHONE);
    let request_id = env.send_accepted(UK_PHONE).await;
    let whatsapp = env.wait_for_messages(UK_PHONE, 1).await;
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    assert_eq!(code_in(&sms[0].text), whatsapp[0].code, "the same code");
    let status = wait_for_delivery(&env, &request_id, "sms", "delivered").await;
    assert_eq!(status["deliveries"][0]["status"], "sent", "{status}");
}

#[tokio::test]
async fn a_failure_receipt_and_a_timer_that_meet_send_one_sms() {
    // The failure receipt comes at once; the timer runs out a second later and finds
    // the fallback begun.
    let (env, _api, worker) = sms_env(Duration::from_secs(1)).await;
    whatsapp_fails(&env, UK_PHONE, "131049");
    env.send_accepted(UK_PHONE).await;
    wait_for_sms(&env, UK_PHONE, 1).await;
    timers_checked(&env, worker).await;
    assert_eq!(env.sandbox.sms_calls(UK_PHONE).len(), 1, "one SMS");
}

#[tokio::test]
async fn a_code_delivered_in_time_goes_by_no_sms() {
    let (env, _api, worker) = sms_env(Duration::from_secs(1)).await;
    let request_id = env.send_accepted(UK_PHONE).await;
    env.wait_for_status(&request_id, "delivered").await;
    timers_checked(&env, worker).await;
    assert!(env.sandbox.sms_calls(UK_PHONE).is_empty());
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status["channel"], "whatsapp");
    assert_eq!(status["deliveries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_country_without_sms_gets_none_and_its_failed_code_is_deleted() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    not_on_whatsapp(&env, INDIA_PHONE);
    let request_id = env.send_accepted(INDIA_PHONE).await;
    env.wait_for_status(&request_id, "failed").await;
    let (status, body) = env.verify(INDIA_PHONE, "123456").await;
    assert_refused(status, &body, 404, "OTP_NOT_FOUND");
    assert!(env.sandbox.sms_calls(INDIA_PHONE).is_empty());
}

#[tokio::test]
async fn the_app_can_ask_for_sms_and_is_refused_where_it_is_not_allowed() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    let (status, body) = sms_asked(&env, UK_PHONE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["smsAvailable"], true);
    let request_id = body["requestId"].as_str().expect("requestId").to_owned();
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    let status_body = wait_for_delivery(&env, &request_id, "sms", "delivered").await;
    assert_eq!(status_body["deliveries"].as_array().map(Vec::len), Some(1));
    assert!(
        env.sandbox.messages(UK_PHONE).is_empty(),
        "nothing by WhatsApp"
    );
    let (verified, _) = env.verify(UK_PHONE, &code_in(&sms[0].text)).await;
    assert_eq!(verified, 200);

    let (status, body) = sms_asked(&env, INDIA_PHONE).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "CHANNEL_NOT_ALLOWED");
    assert_eq!(body["message"], "SMS to this country is not enabled");
    let (_, india) = env.send_otp(INDIA_PHONE).await;
    assert_eq!(india["smsAvailable"], false);
}

#[tokio::test]
async fn without_sms_the_app_asking_for_it_is_refused() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let (status, body) = sms_asked(&env, UK_PHONE).await;
    assert_refused(status, &body, 400, "CHANNEL_NOT_ALLOWED");
    let (status, body) = env
        .post(
            "/api/auth/send-otp",
            json!({"phone": UK_PHONE, "channel": "pigeon"}),
        )
        .await;
    assert_refused(status, &body, 400, "INVALID_REQUEST");
}

/// The answer was `status` with the error `code`.
fn assert_refused(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (expected, Some(code)),
        "{body}"
    );
}

/// The answer to asking for `phone`'s code by SMS.
async fn sms_asked(env: &TestEnv, phone: &str) -> (u16, Value) {
    env.post(
        "/api/auth/send-otp",
        json!({"phone": phone, "channel": "sms"}),
    )
    .await
}

/// Asks for `phone`'s code by SMS; its request id.
async fn ask_for_sms(env: &TestEnv, phone: &str) -> String {
    let (status, body) = sms_asked(env, phone).await;
    assert_eq!(status, 202, "{body}");
    body["requestId"].as_str().expect("requestId").to_owned()
}

/// A form body, as Twilio posts it.
fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Posts a status callback for `request_id` to the api, signed with `token`.
async fn post_callback(env: &TestEnv, request_id: &str, status: &str, token: &str) -> u16 {
    let url = format!(
        "{}?request={request_id}&fallback=0",
        twilio_callback_url(&env.api_url)
    );
    let params = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", status),
        ("To", "+447911123456"),
        ("AccountSid", wati_sandbox::DEFAULT_TWILIO_ACCOUNT_SID),
    ];
    let signature = wati_sandbox::twilio_signature(token, &url, &params);
    env.http
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&params))
        .send()
        .await
        .expect("api reachable")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_forged_callback_is_refused_and_a_signed_one_moves_the_status() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    env.sandbox.script_sms(
        UK_PHONE,
        vec![ScriptedSms {
            outcome: Some(SmsOutcome::Silent),
            ..ScriptedSms::default()
        }],
    );
    let request_id = ask_for_sms(&env, UK_PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    assert_eq!(
        post_callback(&env, &request_id, "delivered", "not-the-token").await,
        403
    );
    let unsigned = env
        .http
        .post(format!(
            "{}?request={request_id}&fallback=0",
            twilio_callback_url(&env.api_url)
        ))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[("MessageStatus", "delivered")]))
        .send()
        .await
        .expect("api reachable");
    assert_eq!(unsigned.status().as_u16(), 403);
    let (_, status) = env
        .get(&format!("/api/auth/otp-status/{request_id}"), None)
        .await;
    assert_eq!(status["status"], "sent", "nothing changed: {status}");
    assert_eq!(
        post_callback(
            &env,
            &request_id,
            "delivered",
            wati_sandbox::DEFAULT_TWILIO_AUTH_TOKEN
        )
        .await,
        200
    );
    env.wait_for_status(&request_id, "delivered").await;
}

#[tokio::test]
async fn an_invalid_number_fails_for_good_and_its_code_is_deleted() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    env.sandbox.script_sms(
        UK_PHONE,
        vec![ScriptedSms {
            code: Some(21211),
            ..ScriptedSms::default()
        }],
    );
    let request_id = ask_for_sms(&env, UK_PHONE).await;
    let status = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(status["reason"], "Twilio rejected the request (HTTP 400)");
    assert!(
        status["info"]
            .as_str()
            .is_some_and(|i| i.starts_with("21211")),
        "{status}"
    );
    assert_eq!(env.sandbox.sms_calls(UK_PHONE).len(), 1, "no retry");
    let (verify, body) = env.verify(UK_PHONE, "123456").await;
    assert_refused(verify, &body, 404, "OTP_NOT_FOUND");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_the_same_code() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    env.sandbox.script_sms(
        UK_PHONE,
        vec![
            ScriptedSms {
                code: Some(20429),
                ..ScriptedSms::default()
            },
            ScriptedSms {
                status: Some(503),
                ..ScriptedSms::default()
            },
        ],
    );
    let request_id = ask_for_sms(&env, UK_PHONE).await;
    env.wait_for_status(&request_id, "delivered").await;
    let calls = env.sandbox.sms_calls(UK_PHONE);
    assert_eq!(calls.len(), 3, "two refusals, then the send");
    let codes: Vec<String> = calls.iter().map(|c| code_in(&c.body)).collect();
    assert!(
        codes.iter().all(|c| c == &codes[0] && c.len() == 6),
        "{codes:?}"
    );
    assert_eq!(env.sandbox.sms_messages(UK_PHONE).len(), 1);
}

#[tokio::test]
async fn the_fallback_timer_outlives_the_worker_that_set_it() {
    let (env, _api, worker) = sms_env(Duration::from_secs(2)).await;
    whatsapp_is_silent(&env, UK_PHONE);
    let request_id = env.send_accepted(UK_PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    // The timer waits in Redis, not in the worker that set it.
    worker.stop().await;
    assert_eq!(timers(&env).await.len(), 1, "the timer is in Redis");
    let _restarted = env
        .start_worker_with(env.sms_worker_config(SMS_COUNTRIES, Duration::from_secs(2)))
        .await;
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    let whatsapp = env.sandbox.messages(UK_PHONE);
    assert_eq!(code_in(&sms[0].text), whatsapp[0].code);
}

#[tokio::test]
async fn sends_wati_accepted_in_one_call_have_their_timers_set_together_and_each_is_checked() {
    // One call a second: the sends wait for the same call.
    let one_call_a_second = budgets(WatiApiVersion::V3, 10, 0, 32);
    let mut env = TestEnv::new().await;
    let _api = env
        .start_sms_api_with(SMS_COUNTRIES, &[], |api| {
            api.common.budgets = one_call_a_second.clone();
        })
        .await;
    env.enable_receipts(
        Duration::from_millis(50),
        Duration::from_secs(3600),
        1,
        false,
    );
    let worker_config = || {
        let mut config = env.sms_worker_config(SMS_COUNTRIES, Duration::from_secs(4));
        config.common.budgets = one_call_a_second.clone();
        config
    };
    let worker = env.start_worker_with(worker_config()).await;
    let silent = [
        "447911123450",
        "447911123451",
        "447911123452",
        "447911123453",
    ];
    for phone in silent {
        whatsapp_is_silent(&env, phone);
    }
    let delivered = "447911123454";
    env.occupy_call_slot(&one_call_a_second).await;
    let mut ids = Vec::new();
    for phone in silent.iter().chain([&delivered]) {
        ids.push(env.send_accepted(phone).await);
    }
    for id in &ids[..silent.len()] {
        env.wait_for_status(id, "sent").await;
    }
    env.wait_for_status(&ids[silent.len()], "delivered").await;
    let calls = env.sandbox.call_log();
    assert_eq!(calls.len(), 1, "the five sends shared one call: {calls:?}");
    assert_eq!(calls[0].recipients.len(), 5);
    // A stopped worker has finished its jobs, each acked once its timer was set.
    worker.stop().await;
    let set = timers(&env).await;
    assert_eq!(set.len(), silent.len() + 1, "{set:?}");
    assert!(
        set.iter().all(|(_, due)| *due == set[0].1),
        "set in one call, at one time: {set:?}"
    );
    let restarted = env.start_worker_with(worker_config()).await;
    for phone in silent {
        let sms = wait_for_sms(&env, phone, 1).await;
        assert_eq!(code_in(&sms[0].text), env.sandbox.messages(phone)[0].code);
    }
    timers_checked(&env, restarted).await;
    for phone in silent {
        assert_eq!(env.sandbox.sms_calls(phone).len(), 1, "one SMS to {phone}");
    }
    assert!(
        env.sandbox.sms_calls(delivered).is_empty(),
        "delivered in time"
    );
}

#[tokio::test]
async fn a_timer_whose_check_fails_runs_out_again_and_its_sms_goes_once_rabbitmq_is_back() {
    // The worker reaches RabbitMQ through a proxy the test cuts: its SMS job cannot
    // be published when the timer runs out.
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let (env, _api, worker) = sms_env_with(Duration::from_secs(1), |config| {
        config.common.amqp_url = amqp_url;
    })
    .await;
    whatsapp_is_silent(&env, UK_PHONE);
    let request_id = env.send_accepted(UK_PHONE).await;
    env.wait_for_status(&request_id, "sent").await;
    let set = timers(&env).await;
    assert_eq!(set.len(), 1, "{set:?}");
    let runs_out_at = set[0].1;
    proxy.cut();
    // Claimed (it runs out again 10 s after the claim), and its check failed.
    eventually("the timer to be claimed", DEADLINE, || async {
        let set = timers(&env).await;
        set.first()
            .is_some_and(|(_, at)| *at > runs_out_at + 5_000)
            .then_some(())
    })
    .await;
    assert!(env.sandbox.sms_calls(UK_PHONE).is_empty());
    proxy.restore();
    let sms = wait_for_sms(&env, UK_PHONE, 1).await;
    assert_eq!(
        code_in(&sms[0].text),
        env.sandbox.messages(UK_PHONE)[0].code
    );
    eventually("the timer to be removed", DEADLINE, || async {
        timers(&env).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(env.sandbox.sms_calls(UK_PHONE).len(), 1);
    // Counted as the operators see them (the metrics are the test process's, shared by
    // the tests it runs: no other test makes a check fail).
    let samples = env.metrics_of(&worker).await;
    for result in ["failed", "checked"] {
        let count = value(
            &samples,
            "otp_fallback_timer_checks_total",
            &[("result", result)],
        );
        assert!(count >= 1.0, "{result}: {count}");
    }
}

#[tokio::test]
async fn a_timer_claimed_and_not_checked_runs_out_again_for_any_worker() {
    let env = TestEnv::new().await;
    let timers = FallbackTimers::new(env.redis.clone(), &env.keys());
    let phone = PhoneNumber::from_e164_digits(UK_PHONE).expect("phone");
    let job = |at| {
        SendJob::new(
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            phone.clone(),
            at,
        )
    };
    let (now, later) = (job(1), job(2));
    timers
        .set(std::slice::from_ref(&now), Duration::ZERO)
        .await
        .expect("set");
    timers
        .set(&[later], Duration::from_secs(60))
        .await
        .expect("set");
    let claim_for = Duration::from_millis(300);
    let jobs =
        |due: &[RunOut]| -> Vec<SendJob> { due.iter().map(|t| t.job().expect("a job")).collect() };
    let claimed = match timers.claim(10, claim_for).await.expect("claim") {
        Claim::Due(due) => due,
        other => panic!("the first timer ran out: {other:?}"),
    };
    assert_eq!(jobs(&claimed), std::slice::from_ref(&now));
    // While it is claimed no other worker gets it.
    match timers.claim(10, claim_for).await.expect("claim") {
        Claim::NextIn(wait) if wait <= claim_for => {}
        other => panic!("the claim is what runs out next: {other:?}"),
    }
    // Its worker stopped before checking it: it runs out again, for anyone.
    let again = eventually("the claim to lapse", DEADLINE, || async {
        match timers.claim(10, claim_for).await.ok()? {
            Claim::Due(due) => Some(due),
            _ => None,
        }
    })
    .await;
    assert_eq!(jobs(&again), [now]);
    timers.done(&again).await.expect("done");
    match timers.claim(10, claim_for).await.expect("claim") {
        Claim::NextIn(wait) if wait > Duration::from_secs(50) => {}
        other => panic!("only the later timer is left: {other:?}"),
    }
}

#[tokio::test]
async fn an_sms_asked_for_counts_as_a_send_of_the_code_and_against_the_sms_budget() {
    let mut env = TestEnv::new().await;
    let _api = env
        .start_sms_api(
            SMS_COUNTRIES,
            &["--max-sends-per-code", "2", "--sms-sends-per-minute", "1"],
        )
        .await;
    let first = env.send_accepted(UK_PHONE).await;
    let by_sms = ask_for_sms(&env, UK_PHONE).await;
    assert_ne!(first, by_sms);
    // The code's third send, by SMS or not, is past MAX_SENDS_PER_CODE.
    let (status, body) = sms_asked(&env, UK_PHONE).await;
    assert_refused(status, &body, 429, "RATE_LIMITED");
    // Another phone's SMS is past SMS_SENDS_PER_MINUTE; its WhatsApp send is not.
    let other = "447911123459";
    let (status, body) = sms_asked(&env, other).await;
    assert_refused(status, &body, 429, "RATE_LIMITED");
    env.send_accepted(other).await;
}

#[tokio::test]
async fn an_sms_refused_by_the_sms_budget_leaves_the_code_to_its_whatsapp_send() {
    let mut env = TestEnv::new().await;
    let _api = env
        .start_sms_api(SMS_COUNTRIES, &["--sms-sends-per-minute", "1"])
        .await;
    // Another phone spends the minute's SMS.
    ask_for_sms(&env, "447911123459").await;
    env.send_accepted(UK_PHONE).await;
    let (status, body) = sms_asked(&env, UK_PHONE).await;
    assert_refused(status, &body, 429, "RATE_LIMITED");
    // Before, the refused SMS still held the code as carried by it: no fallback for
    // the WhatsApp send, and a failed one did not retire it.
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(UK_PHONE).expect("phone");
    let holder: Option<String> = redis::cmd("HGET")
        .arg(env.keys().otp(&phone))
        .arg(otp_shared::redis::records::code::FALLBACK)
        .query_async(&mut env.redis.clone())
        .await
        .expect("the code record");
    assert_eq!(holder, None);
    let sends: Option<u32> = redis::cmd("HGET")
        .arg(env.keys().otp(&phone))
        .arg(otp_shared::redis::records::code::SENDS)
        .query_async(&mut env.redis.clone())
        .await
        .expect("the code record");
    assert_eq!(sends, Some(1), "the refused re-send is taken back");
}

#[tokio::test]
async fn a_failure_receipt_whose_sms_cannot_be_queued_retires_the_code() {
    let mut env = TestEnv::new().await;
    // The api reaches RabbitMQ through a proxy the test cuts; the worker does not.
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let _api = env
        .start_sms_api_with(SMS_COUNTRIES, &[], |config| {
            config.common.amqp_url = amqp_url;
        })
        .await;
    // The failure receipt comes two seconds after WATI accepts the message.
    env.enable_receipts(Duration::from_secs(2), Duration::from_secs(3600), 1, false);
    let _worker = env
        .start_worker_with(env.sms_worker_config(SMS_COUNTRIES, Duration::ZERO))
        .await;
    whatsapp_fails(&env, UK_PHONE, "131026");
    let request_id = env.send_accepted(UK_PHONE).await;
    let whatsapp = env.wait_for_messages(UK_PHONE, 1).await;
    proxy.cut();
    let status = wait_for_delivery(&env, &request_id, "sms", "failed").await;
    assert_eq!(status["deliveries"][0]["status"], "failed", "{status}");
    proxy.restore();
    // Before, the code stayed held for an SMS that never went, until it expired.
    let (verified, body) = env.verify(UK_PHONE, &whatsapp[0].code).await;
    assert_refused(verified, &body, 404, "OTP_NOT_FOUND");
    assert!(env.sandbox.sms_calls(UK_PHONE).is_empty());
}

#[tokio::test]
async fn a_fallback_sms_that_fails_leaves_the_code_whatsapp_may_still_bring() {
    let (env, _api, _worker) = sms_env(Duration::from_secs(1)).await;
    // WATI accepts the message and no receipt comes (a phone offline): the timer sends
    // the code by SMS, and the carrier cannot deliver it.
    whatsapp_is_silent(&env, UK_PHONE);
    env.sandbox.script_sms(
        UK_PHONE,
        vec![ScriptedSms {
            outcome: Some(SmsOutcome::Undelivered),
            ..ScriptedSms::default()
        }],
    );
    let request_id = env.send_accepted(UK_PHONE).await;
    let whatsapp = env.wait_for_messages(UK_PHONE, 1).await;
    wait_for_delivery(&env, &request_id, "sms", "failed").await;
    // The phone comes back online with the WhatsApp message. Before, the SMS's
    // failure had deleted the code.
    let (verified, body) = env.verify(UK_PHONE, &whatsapp[0].code).await;
    assert_eq!(verified, 200, "{body}");
}

#[tokio::test]
async fn a_refusal_of_ours_and_not_the_recipients_sends_no_sms() {
    let (env, _api, _worker) = sms_env(Duration::ZERO).await;
    // A key WATI no longer takes refuses every send alike: SMS would not be a way
    // around the recipient's trouble but a copy of every code at SMS prices.
    env.sandbox.script(
        UK_PHONE,
        vec![ScriptedReply {
            status: Some(401),
            ..ScriptedReply::default()
        }],
    );
    let request_id = env.send_accepted(UK_PHONE).await;
    let status = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(
        status["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert!(env.sandbox.sms_calls(UK_PHONE).is_empty());
}
