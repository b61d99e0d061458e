//! On the local Redis Cluster (`scripts/cluster up`, which the test fails without): a
//! master is shut down in the middle of a burst of sends; its replica takes over, and the
//! service recovers by itself within 15 s, answering only 202 or 503 meanwhile. A test
//! binary of its own, so that no other test runs while the master is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use otp_e2e::clusters::{self, Restart};
use otp_e2e::{DEADLINE, TestEnv, eventually};

#[tokio::test]
async fn a_master_lost_mid_burst_is_replaced_and_the_service_recovers_by_itself() {
    let mut env = TestEnv::on_redis_cluster().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits("919876543210").expect("a phone");
    let master = clusters::redis_master_of(&env.keys().otp(&phone)).await;

    let env = Arc::new(env);
    let started = Instant::now();
    let stop_at = Duration::from_secs(3);
    let run_for = stop_at + Duration::from_secs(25);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(stop_at).await;
        Restart::redis(master).await
    });
    // Sends to ever new phones, spread over every slot, until `run_for` has passed.
    let answers: Vec<(Duration, u16, String)> = futures_util::stream::iter(0..)
        .take_while(|_| std::future::ready(started.elapsed() < run_for))
        .map(|i: u64| {
            let env = env.clone();
            async move {
                let phone = format!("9196{i:08}");
                let (status, body) = env.send_otp(&phone).await;
                (
                    started.elapsed(),
                    status,
                    body["code"].as_str().unwrap_or("").to_owned(),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let restart = stopper.await.expect("the master was stopped");

    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| *status != 202 && *status != 503)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "answers other than 202 and 503: {wrong:?}"
    );
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(_, status, _)| *status == 503)
        .map(|(at, _, _)| *at)
        .collect();
    assert!(
        !refused.is_empty(),
        "no send was refused: did the master stop?"
    );
    let last_refusal = refused.iter().max().copied().unwrap_or(stop_at);
    assert!(
        last_refusal <= stop_at + Duration::from_secs(15),
        "still refusing {:?} after the master stopped",
        last_refusal.saturating_sub(stop_at)
    );
    let after = answers
        .iter()
        .filter(|(at, status, _)| *at > last_refusal && *status == 202)
        .count();
    assert!(after >= 100, "only {after} sends accepted after recovery");
    eprintln!(
        "master 127.0.0.1:{master} stopped at 3 s: {} answers, {} refused with 503, the last {:?} after the stop; {after} accepted after",
        answers.len(),
        refused.len(),
        last_refusal.saturating_sub(stop_at)
    );
    let now_master = clusters::redis_master_of(&env.keys().otp(&phone)).await;
    assert_ne!(
        now_master, master,
        "a replica took the stopped master's slots"
    );
    restart.start().await;
    // The service keeps working with the old master back as a replica.
    eventually("a send after the node rejoined", DEADLINE, || async {
        (env.send_otp("919811100011").await.0 == 202).then_some(())
    })
    .await;
}
