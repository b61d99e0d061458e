//! Many jobs, several workers, copies of jobs: every code is delivered exactly once,
//! and the shared WATI send rate holds across workers.

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
async fn the_send_rate_holds_across_two_workers() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    for n in 0..16 {
        assert_eq!(env.send_otp(&phone(n)).await.0, 202);
    }
    let mut config = env.worker_config();
    config.wati.sends_per_second = 8;
    let first = env.start_worker_with(config.clone()).await;
    let second = env.start_worker_with(config).await;
    eventually("all 16 codes at the sandbox", DEADLINE, || async {
        (env.sandbox.accepted() >= 16).then_some(())
    })
    .await;
    first.stop().await;
    second.stop().await;
    let mut times: Vec<u64> = (0..16)
        .flat_map(|n| env.sandbox.calls(&phone(n)))
        .map(|c| c.received_at_ms)
        .collect();
    times.sort_unstable();
    // 8 per second means slots 125 ms apart: 16 sends span at least 15 intervals.
    let span = times[15] - times[0];
    assert!(span >= 15 * 125 - 30, "16 sends within {span} ms");
    // And no second holds more than 8 sends (+1 for timer granularity at the edges).
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|t| **t < start + 1000).count();
        assert!(
            in_window <= 9,
            "{in_window} sends in the second after {start}"
        );
    }
}

#[tokio::test]
async fn a_job_whose_code_expires_while_waiting_for_a_send_slot_never_calls_wati() {
    let mut env = TestEnv::new().await;
    let mut api_config = env.api_config();
    api_config.common.otp_ttl_seconds = 2;
    let _api = env.start_api_with(api_config).await;
    let mut request_ids = Vec::new();
    for n in 0..6 {
        request_ids.push(env.send_accepted(&phone(n)).await);
    }
    let mut config = env.worker_config();
    config.wati.sends_per_second = 1;
    let _worker = env.start_worker_with(config).await;
    let mut expired = 0;
    for request_id in &request_ids {
        let status = eventually("a final status", DEADLINE, || async {
            let (_, body) = env
                .get(&format!("/api/auth/otp-status/{request_id}"), None)
                .await;
            matches!(body["status"].as_str(), Some("sent" | "expired")).then_some(body)
        })
        .await;
        if status["status"] == "expired" {
            assert_eq!(status["attempts"], 0, "an expired job never called WATI");
            expired += 1;
        }
    }
    // One slot a second and two seconds of life: at most 2 or 3 can go out.
    assert!(expired >= 3, "only {expired} of 6 expired");
    let calls: usize = (0..6).map(|n| env.sandbox.calls(&phone(n)).len()).sum();
    assert_eq!(calls, 6 - expired);
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
