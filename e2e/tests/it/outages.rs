//! The api and the worker lose Redis or RabbitMQ (a proxy between them is cut) and
//! recover by themselves when it returns; no job is lost meanwhile.

use otp_e2e::proxy::Proxy;
use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::json;

fn phone(n: u32) -> String {
    format!("9198765432{n:02}")
}

fn failed_to_send() -> serde_json::Value {
    json!({"status": "error", "code": "UNAVAILABLE", "message": "Failed to send OTP", "retryAfterSeconds": 5})
}

#[tokio::test]
async fn the_api_answers_503_without_rabbitmq_and_recovers() {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let mut config = env.api_config();
    config.common.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);

    proxy.cut();
    let (status, body) = env.send_otp(&phone(2)).await;
    assert_eq!((status, body), (503, failed_to_send()));
    // Nothing half-done: no code was left for the phone whose job was not queued.
    assert_eq!(env.verify(&phone(2), "123456").await.0, 404);
    let (status, ready) = env.get("/readyz", None).await;
    assert_eq!((status, &ready["rabbitmq"]), (503, &json!("down")));
    // While the api reconnects, a send's 503 still says when to come back (SPEC.md).
    let reconnecting = env
        .http
        .post(format!("{}/api/auth/send-otp", env.api_url))
        .json(&json!({"phone": phone(4)}))
        .send()
        .await
        .expect("api reachable");
    assert_eq!(reconnecting.status().as_u16(), 503);
    assert_eq!(
        reconnecting
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );

    proxy.restore();
    eventually("the api to publish again", DEADLINE, || async {
        (env.send_otp(&phone(3)).await.0 == 202).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_api_answers_503_without_redis_and_recovers() {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut config = env.api_config();
    config.common.redis_url = format!("redis://127.0.0.1:{}", proxy.port());
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);

    proxy.cut();
    let (status, body) = env.send_otp(&phone(2)).await;
    assert_eq!((status, body), (503, failed_to_send()));
    let (status, body) = env.verify(&phone(1), "123456").await;
    assert_eq!((status, &body["code"]), (503, &json!("UNAVAILABLE")));
    let (status, ready) = env.get("/readyz", None).await;
    assert_eq!((status, &ready["redis"]), (503, &json!("down")));

    proxy.restore();
    eventually("the api to store codes again", DEADLINE, || async {
        (env.send_otp(&phone(3)).await.0 == 202).then_some(())
    })
    .await;
}

#[tokio::test]
async fn send_otp_says_failed_to_send_without_redis_with_the_client_limit_on() {
    // The per-address count is send-otp's first step on Redis: its outage is the same
    // "Failed to send OTP" as any other step's, and verify-otp keeps its own words.
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut config = env.api_config();
    config.common.redis_url = format!("redis://127.0.0.1:{}", proxy.port());
    config.limits.ip_requests_per_minute = 60;
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);

    proxy.cut();
    let (status, body) = env.send_otp(&phone(2)).await;
    assert_eq!((status, body), (503, failed_to_send()));
    let (status, body) = env.verify(&phone(1), "123456").await;
    assert_eq!(
        (status, &body["message"]),
        (503, &json!("Service temporarily unavailable"))
    );
}

#[tokio::test]
async fn the_worker_reconnects_to_rabbitmq_and_delivers_what_was_queued_meanwhile() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let mut config = env.worker_config();
    config.common.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let _worker = env.start_worker_with(config).await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);
    env.wait_for_messages(&phone(1), 1).await;

    proxy.cut();
    assert_eq!(env.send_otp(&phone(2)).await.0, 202);
    proxy.restore();
    let messages = env.wait_for_messages(&phone(2), 1).await;
    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn the_worker_rides_out_a_redis_outage_without_losing_the_job() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut config = env.worker_config();
    config.common.redis_url = format!("redis://127.0.0.1:{}", proxy.port());
    let _worker = env.start_worker_with(config).await;
    assert_eq!(env.send_otp(&phone(1)).await.0, 202);
    env.wait_for_messages(&phone(1), 1).await;

    proxy.cut();
    let request_id = env.send_accepted(&phone(2)).await;
    assert!(env.sandbox.messages(&phone(2)).is_empty());
    proxy.restore();
    env.wait_for_messages(&phone(2), 1).await;
    env.wait_for_status(&request_id, "sent").await;
}

/// Messages in queue `name`, ready or held unacked by a consumer (rabbitmqctl, since a
/// passive declare counts only the ready ones).
fn messages_in(name: &str) -> u64 {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ])
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl is not installed ({e}): RabbitMQ's own tool"));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let (queue, count) = line.split_once('\t')?;
            (queue == name).then(|| count.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue {name} not listed by rabbitmqctl"))
}

/// The broker takes a job but its confirm is lost on the way back: the api cannot know
/// whether the job is queued, so it publishes it again on a fresh link. The send is
/// accepted, both copies are handled, the code goes out once, and it verifies. (Before,
/// the api answered 503 and took the code back while the job still went out.)
#[tokio::test]
async fn a_publish_whose_confirm_is_lost_is_published_again_and_its_code_arrives_once() {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let mut config = env.api_config();
    config.common.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let _api = env.start_api_with(config).await;
    let send_queue = env.queues().send;

    proxy.withhold_replies_on_open_links();
    env.send_accepted(&phone(1)).await;
    let copies = env
        .queue_counts(&send_queue)
        .await
        .expect("the send queue")
        .ready;
    assert_eq!(
        copies, 2,
        "the lost-confirm copy and the one published again"
    );

    let _worker = env.start_worker().await;
    let code = env.wait_for_messages(&phone(1), 1).await[0].code.clone();
    eventually("both copies to be handled", DEADLINE, || async {
        (messages_in(&send_queue) == 0).then_some(())
    })
    .await;
    assert_eq!(env.sandbox.messages(&phone(1)).len(), 1, "sent once");
    assert_eq!(env.verify(&phone(1), &code).await.0, 200);
}
