//! On the local three-node RabbitMQ cluster (`scripts/cluster up`, which the test fails
//! without): the node that leads the send queue is stopped in the middle of a
//! 5,000-send burst. The api and the workers move to the other nodes by themselves;
//! every send that got a 202 reaches WATI exactly once. (A publish cut before its
//! confirm came back is published again on the new node; only if that fails too does
//! the send get a 503 while its job may be on the queue and its code may go out. The
//! test counts those, and does not forbid them.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use otp_e2e::clusters::{self, Restart};
use otp_e2e::{TestEnv, eventually};
use serde_json::json;

const SENDS: usize = 5_000;
/// The leader is stopped once this many sends have been answered.
const STOP_AFTER: usize = 1_000;
const CONCURRENCY: usize = 64;

fn phone(i: usize) -> String {
    format!("9197{i:08}")
}

#[tokio::test]
async fn stopping_the_send_queue_leader_mid_burst_loses_no_accepted_send_and_sends_none_twice() {
    let mut env = TestEnv::on_rabbitmq_cluster().await;
    let api = env.start_api().await;
    let first = env.start_worker().await;
    let second = env.start_worker().await;
    env.wait_for_a_consumer().await;
    let leader = clusters::rabbit_leader(&env.queues().send).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let stopper = {
        let answered = answered.clone();
        tokio::spawn(async move {
            eventually(
                "the burst to reach the stop point",
                Duration::from_secs(120),
                || {
                    let reached = answered.load(Ordering::Relaxed) >= STOP_AFTER;
                    async move { reached.then_some(()) }
                },
            )
            .await;
            let restart = Restart::rabbit(leader).await;
            (restart, answered.load(Ordering::Relaxed))
        })
    };
    let env = Arc::new(env);
    let results: Vec<(String, u16)> = futures_util::stream::iter(0..SENDS)
        .map(|i| {
            let env = env.clone();
            let answered = answered.clone();
            async move {
                let phone = phone(i);
                let (status, _) = env
                    .post("/api/auth/send-otp", json!({ "phone": phone }))
                    .await;
                answered.fetch_add(1, Ordering::Relaxed);
                (phone, status)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let (restart, answered_when_stopped) = stopper.await.expect("the leader was stopped");
    assert!(
        answered_when_stopped + 500 <= SENDS,
        "the node stopped only after {answered_when_stopped} of {SENDS} answers: too late to test the burst"
    );

    let accepted: Vec<&String> = results
        .iter()
        .filter(|(_, status)| *status == 202)
        .map(|(phone, _)| phone)
        .collect();
    let refused: Vec<&(String, u16)> = results.iter().filter(|(_, s)| *s != 202).collect();
    assert!(
        refused.iter().all(|(_, status)| *status == 503),
        "refusals other than 503: {:?}",
        refused.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        accepted.len() >= SENDS / 2,
        "only {} of {SENDS} accepted",
        accepted.len()
    );

    eventually(
        "every accepted send to reach WATI",
        Duration::from_secs(90),
        || async {
            accepted
                .iter()
                .all(|phone| !env.sandbox.messages(phone).is_empty())
                .then_some(())
        },
    )
    .await;
    // The workers finish what they hold, so a copy redelivered late would show.
    first.stop().await;
    second.stop().await;
    api.stop().await;
    let twice: Vec<&&String> = accepted
        .iter()
        .filter(|phone| env.sandbox.messages(phone).len() > 1)
        .collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let refused_yet_sent = refused
        .iter()
        .filter(|(phone, _)| !env.sandbox.messages(phone).is_empty())
        .count();
    eprintln!(
        "leader {leader} stopped after {STOP_AFTER} answers: {} accepted, {} refused \
         with 503 ({refused_yet_sent} of them sent all the same: publish outcome unknown twice)",
        accepted.len(),
        refused.len()
    );
    restart.start().await;
}
