//! The worker's core (deliverer and batcher) with the real Redis and the WATI sandbox
//! alone, no broker: sends delivered at once share a call; every branch of the
//! delivery lease (taken by another worker, lapsed); a code that expires waiting for
//! budget; and a delivery WATI accepted that Redis then keeps failing to record.

use std::sync::Arc;
use std::time::Duration;

use otp_e2e::proxy::Proxy;
use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::{Budgets, WatiApiVersion};
use otp_shared::job::SendJob;
use otp_shared::redis::status::{DeliveryState, StatusStore};
use otp_worker::config::WorkerConfig;
use otp_worker::delivery::{Deliverer, Outcome, Requeue};
use redis::AsyncCommands;
use wati_sandbox::ScriptedReply;

const PHONES: [&str; 5] = [
    "919876543210",
    "14155552671",
    "447911123456",
    "61412345678",
    "919876543211",
];
const CODE_LIFE: Duration = Duration::from_secs(300);

fn config(env: &TestEnv, budgets: Budgets) -> WorkerConfig {
    let mut config = env.worker_config();
    config.common.budgets = budgets.clone();
    config.wati.api_version = budgets.api_version;
    config
}

/// One call every 1.025 s over all workers, v3.
fn one_call_a_second() -> Budgets {
    budgets(WatiApiVersion::V3, 10, 0, 32)
}

async fn state(env: &TestEnv, job: &SendJob) -> Option<DeliveryState> {
    StatusStore::new(env.redis.clone(), env.keys())
        .get(job.request_id)
        .await
        .expect("redis")
        .map(|record| record.first.state)
}

/// Starts delivering `job` in its own task, and waits until its lease is taken (its
/// status is `sending`): it is then waiting in the batcher for the next call slot.
async fn delivering(
    env: &TestEnv,
    deliverer: &Arc<Deliverer>,
    job: &SendJob,
) -> tokio::task::JoinHandle<Outcome> {
    let task = {
        let (deliverer, job) = (deliverer.clone(), job.clone());
        tokio::spawn(async move { deliverer.deliver(&job).await })
    };
    eventually("the delivery to start", DEADLINE, || async {
        (state(env, job).await == Some(DeliveryState::Sending)).then_some(())
    })
    .await;
    task
}

#[tokio::test]
async fn sends_that_wait_for_the_same_call_slot_share_one_call() {
    let env = TestEnv::new().await;
    let budgets = one_call_a_second();
    let (deliverer, _stop) = env.deliverer(&config(&env, budgets.clone()), env.redis.clone());
    let mut jobs = Vec::new();
    for phone in PHONES {
        jobs.push(env.stored_job(phone, CODE_LIFE).await);
    }
    env.occupy_call_slot(&budgets).await;
    let outcomes =
        futures_util::future::join_all(jobs.iter().map(|job| deliverer.deliver(job))).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Sent)),
        "{outcomes:?}"
    );
    let log = env.sandbox.call_log();
    assert_eq!(log.len(), 1, "one call: {log:?}");
    let mut recipients = log[0].recipients.clone();
    recipients.sort();
    let mut expected: Vec<String> = PHONES.iter().map(|p| (*p).to_owned()).collect();
    expected.sort();
    assert_eq!(recipients, expected);
    for (job, phone) in jobs.iter().zip(PHONES) {
        assert_eq!(state(&env, job).await, Some(DeliveryState::Sent));
        let message = &env.sandbox.messages(phone)[0];
        assert_eq!(
            message.local_message_id.as_deref(),
            Some(&*job.request_id.to_string())
        );
    }
}

/// A send waiting in the batcher for a call slot a second away.
struct Waiting {
    env: TestEnv,
    deliverer: Arc<Deliverer>,
    _stop: tokio::sync::watch::Sender<bool>,
    job: SendJob,
    task: tokio::task::JoinHandle<Outcome>,
}

async fn waiting_for_a_slot() -> Waiting {
    let env = TestEnv::new().await;
    let budgets = one_call_a_second();
    let (deliverer, stop) = env.deliverer(&config(&env, budgets.clone()), env.redis.clone());
    let deliverer = Arc::new(deliverer);
    let job = env.stored_job(PHONES[0], CODE_LIFE).await;
    env.occupy_call_slot(&budgets).await;
    let task = delivering(&env, &deliverer, &job).await;
    Waiting {
        env,
        deliverer,
        _stop: stop,
        job,
        task,
    }
}

#[tokio::test]
async fn a_send_whose_lease_another_worker_took_is_dropped_without_a_call() {
    // `_stop` is bound: dropping it would stop the batcher.
    let Waiting {
        env,
        job,
        task,
        _stop,
        ..
    } = waiting_for_a_slot().await;
    // While it waits for the slot, another worker takes the lease over.
    let _: () = env
        .redis
        .clone()
        .set_ex(
            env.keys().delivery_lease(&job.phone, job.request_id),
            "another-worker",
            30,
        )
        .await
        .expect("redis");
    let outcome = task.await.expect("the delivery ends");
    assert!(
        matches!(
            outcome,
            Outcome::Dropped {
                why: "another worker took over"
            }
        ),
        "{outcome:?}"
    );
    assert!(env.sandbox.call_log().is_empty(), "no call to WATI");
    // The other worker's lease is left alone.
    let holder: Option<String> = env
        .redis
        .clone()
        .get(env.keys().delivery_lease(&job.phone, job.request_id))
        .await
        .expect("redis");
    assert_eq!(holder.as_deref(), Some("another-worker"));
}

#[tokio::test]
async fn a_send_whose_lease_lapsed_goes_back_to_the_queue_without_a_call() {
    let Waiting {
        env,
        deliverer,
        job,
        task,
        _stop,
    } = waiting_for_a_slot().await;
    let _: () = env
        .redis
        .clone()
        .del(env.keys().delivery_lease(&job.phone, job.request_id))
        .await
        .expect("redis");
    let outcome = task.await.expect("the delivery ends");
    assert!(
        matches!(outcome, Outcome::Requeue(Requeue::LeaseLapsed)),
        "{outcome:?}"
    );
    assert!(env.sandbox.call_log().is_empty(), "no call to WATI");
    // The job goes back to the queue; its copy starts afresh and is delivered.
    let outcome = deliverer.deliver(&job).await;
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
    assert_eq!(env.sandbox.call_log().len(), 1);
}

#[tokio::test]
async fn a_lease_is_kept_alive_through_a_wait_longer_than_its_life() {
    let env = TestEnv::new().await;
    // One call every 5.1 s; the lease lives 4 s (a 2 s WATI timeout and 2 s more).
    let budgets = budgets(WatiApiVersion::V3, 2, 0, 32);
    let config = config(&env, budgets.clone());
    assert!(config.wati.timeout + Duration::from_secs(2) < Duration::from_secs(5));
    let (deliverer, _stop) = env.deliverer(&config, env.redis.clone());
    let job = env.stored_job(PHONES[0], CODE_LIFE).await;
    env.occupy_call_slot(&budgets).await;
    let outcome = deliverer.deliver(&job).await;
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
    assert_eq!(env.sandbox.call_log().len(), 1);
}

#[tokio::test]
async fn a_code_that_expires_while_waiting_for_budget_ends_expired_without_a_call() {
    let env = TestEnv::new().await;
    let budgets = budgets(WatiApiVersion::V1, 10, 0, 1);
    let (deliverer, _stop) = env.deliverer(&config(&env, budgets.clone()), env.redis.clone());
    let job = env.stored_job(PHONES[0], Duration::from_millis(500)).await;
    env.occupy_call_slot(&budgets).await;
    let outcome = deliverer.deliver(&job).await;
    assert!(matches!(outcome, Outcome::Expired), "{outcome:?}");
    assert!(env.sandbox.call_log().is_empty());
    let record = StatusStore::new(env.redis.clone(), env.keys())
        .get(job.request_id)
        .await
        .expect("redis")
        .expect("a status");
    assert_eq!(record.first.state, DeliveryState::Expired);
    assert_eq!(record.first.attempts, 0);
    assert_eq!(record.first.reason.as_deref(), Some("Failed to send OTP"));
}

#[tokio::test]
async fn a_delivery_wati_accepted_that_redis_keeps_failing_to_record_is_not_handed_back() {
    let metrics = otp_shared::metrics::install();
    let env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let through_proxy =
        otp_e2e::redis_or_fail(&format!("redis://127.0.0.1:{}", proxy.port())).await;
    let (deliverer, _stop) = env.deliverer(
        &config(&env, budgets(WatiApiVersion::V3, 0, 0, 32)),
        through_proxy,
    );
    let deliverer = Arc::new(deliverer);
    let job = env.stored_job(PHONES[0], CODE_LIFE).await;
    env.sandbox.script(
        PHONES[0],
        vec![ScriptedReply {
            delay_ms: Some(1_000),
            ..ScriptedReply::default()
        }],
    );
    let task = delivering(&env, &deliverer, &job).await;
    // WATI holds the call; Redis goes away before it answers 200.
    eventually("the call to reach WATI", DEADLINE, || async {
        (env.sandbox.arrived() == 1).then_some(())
    })
    .await;
    proxy.cut();
    let outcome = task.await.expect("the delivery ends");
    // Never handed back: a copy would send the code again.
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
    assert_eq!(env.sandbox.messages(PHONES[0]).len(), 1);
    let lost = otp_e2e::prometheus::value(
        &otp_e2e::prometheus::parse(&metrics.render()),
        "otp_delivery_records_lost_total",
        &[],
    );
    assert_eq!(lost, 1.0);
    // What it costs: the status still says `sending`.
    proxy.restore();
    assert_eq!(state(&env, &job).await, Some(DeliveryState::Sending));
}

#[tokio::test]
async fn a_429_with_retry_after_holds_every_workers_calls() {
    let env = TestEnv::new().await;
    let budgets = one_call_a_second();
    let config = config(&env, budgets.clone());
    let (first, _stop_first) = env.deliverer(&config, env.redis.clone());
    let (second, _stop_second) = env.deliverer(&config, env.redis.clone());
    let first = Arc::new(first);
    env.sandbox.script(
        PHONES[0],
        vec![ScriptedReply {
            status: Some(429),
            retry_after: Some(3),
            ..ScriptedReply::default()
        }],
    );
    let limited = env.stored_job(PHONES[0], CODE_LIFE).await;
    let other = env.stored_job(PHONES[1], CODE_LIFE).await;
    let limited_task = {
        let (first, job) = (first.clone(), limited.clone());
        tokio::spawn(async move { first.deliver(&job).await })
    };
    let answered_429 = eventually("WATI to answer the first call 429", DEADLINE, || async {
        env.sandbox
            .calls(PHONES[0])
            .first()
            .map(|call| call.received_at_ms)
    })
    .await;
    // The other worker's send, a call slot (1.025 s) later, waits for WATI's 3 s too.
    let outcome = second.deliver(&other).await;
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
    let other_call = env.sandbox.calls(PHONES[1])[0].received_at_ms;
    assert!(
        other_call >= answered_429 + 3_000,
        "the other worker called {} ms after the 429",
        other_call - answered_429
    );
    let outcome = limited_task.await.expect("the delivery ends");
    assert!(matches!(outcome, Outcome::Sent), "{outcome:?}");
}
