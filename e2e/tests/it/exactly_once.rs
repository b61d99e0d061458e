//! Many jobs, several workers, copies of jobs: every code is delivered exactly once.

use otp_e2e::{DEADLINE, TestEnv, eventually};

fn phone(n: u32) -> String {
    format!("9198765432{n:02}")
}

#[tokio::test]
async fn fifty_queued_jobs_are_delivered_exactly_once_by_two_workers() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let mut request_ids = Vec::new();
    for n in 0..50 {
        request_ids.push(env.send_accepted(&phone(n)).await);
    }
    let first = env.start_worker().await;
    let second = env.start_worker().await;
    eventually("all 50 codes at the sandbox", DEADLINE, || async {
        (env.sandbox.accepted() >= 50).then_some(())
    })
    .await;
    for request_id in &request_ids {
        env.wait_for_status(request_id, "sent").await;
    }
    first.stop().await;
    second.stop().await;
    assert_eq!(env.sandbox.accepted(), 50);
    for n in 0..50 {
        assert_eq!(env.sandbox.messages(&phone(n)).len(), 1, "{}", phone(n));
    }
}

#[tokio::test]
async fn a_re_published_copy_of_a_sent_job_is_not_sent_again() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);
    // Keep a copy of the job as published, then let a worker deliver it.
    let copy = env.peek_send_queue().await;
    let worker = env.start_worker().await;
    env.wait_for_messages(&phone(1), 1).await;
    env.publish_to_send_queue(&copy).await;
    // The copy is consumed (the queue drains) without a second call to WATI.
    eventually("the copy to be consumed", DEADLINE, || async {
        let queue = env.queue_counts(&env.queues().send).await?;
        (queue.ready == 0).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(env.sandbox.calls(&phone(1)).len(), 1);
}

#[tokio::test]
async fn a_re_published_copy_of_a_failed_job_is_dead_lettered_again_with_its_reason() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    env.sandbox.script(
        &phone(1),
        vec![wati_sandbox::ScriptedReply {
            status: Some(401),
            ..Default::default()
        }],
    );
    let request_id = env.send_accepted(&phone(1)).await;
    let copy = env.peek_send_queue().await;
    let _worker = env.start_worker().await;
    env.wait_for_status(&request_id, "failed").await;
    env.publish_to_send_queue(&copy).await;
    // Two dead letters, both with WATI's reason; one call to WATI; the status keeps it.
    let dead = env.queues().dead;
    eventually("two dead letters", DEADLINE, || async {
        let queue = env.queue_counts(&dead).await?;
        (queue.ready == 2).then_some(())
    })
    .await;
    assert_eq!(env.sandbox.calls(&phone(1)).len(), 1);
    let status = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(status["reason"], "WATI API authentication failed");
}

#[tokio::test]
async fn a_copy_consumed_while_the_original_is_mid_call_does_not_call_wati_again() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    env.sandbox.script(
        &phone(1),
        vec![wati_sandbox::ScriptedReply {
            delay_ms: Some(1500),
            ..Default::default()
        }],
    );
    let request_id = env.send_accepted(&phone(1)).await;
    let copy = env.peek_send_queue().await;
    let first = env.start_worker().await;
    env.wait_for_status(&request_id, "sending").await;
    // While the first worker waits on WATI, a copy of the job reaches a second worker
    // (as after a broken link, or a re-publish).
    let second = env.start_worker().await;
    env.publish_to_send_queue(&copy).await;
    env.wait_for_status(&request_id, "sent").await;
    eventually("the copy to be consumed", DEADLINE, || async {
        let queue = env.queue_counts(&env.queues().send).await?;
        (queue.ready == 0 && queue.consumers == 2).then_some(())
    })
    .await;
    first.stop().await;
    second.stop().await;
    assert_eq!(env.sandbox.calls(&phone(1)).len(), 1, "one call to WATI");
    assert_eq!(env.sandbox.messages(&phone(1)).len(), 1);
}
