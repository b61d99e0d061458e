//! The queues on a real RabbitMQ: quorum by default, whose delivery limit carries a
//! poison job (one whose handling fails every time) into the dead-letter queue; a queue
//! that exists as the other type stops api and worker at start with one line naming it
//! and the setting; classic queues still work when asked for.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use otp_e2e::{DEADLINE, TestEnv, eventually};
use otp_shared::amqp::QueueType;

const PHONE: &str = "919845612378";

fn header<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
    headers.inner().get(name)
}

#[tokio::test]
async fn a_poison_job_hits_the_delivery_limit_and_lands_in_the_dead_letter_queue() {
    let env = TestEnv::new().await;
    let mut config = env.worker_config();
    assert_eq!(
        config.common.queue.queue_type,
        QueueType::Quorum,
        "the default"
    );
    config.common.queue.delivery_limit = 2;
    let _worker = env.start_worker_with(config).await;
    env.wait_for_a_consumer().await;

    // A job whose code record Redis refuses to read (a string where a hash belongs):
    // every attempt fails the same way, which is no outage.
    let job = env.stored_job(PHONE, Duration::from_secs(120)).await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("a phone");
    let _: () = redis::pipe()
        .del(env.keys().otp(&phone))
        .set(env.keys().otp(&phone), "not a code record")
        .query_async(&mut env.redis.clone())
        .await
        .expect("damage the record");
    env.publish_to_send_queue(&job.encode()).await;

    let dead = env.queues().dead;
    eventually("the poison job to be dead-lettered", DEADLINE, || async {
        env.queue_counts(&dead)
            .await
            .filter(|c| c.ready == 1)
            .map(drop)
    })
    .await;
    let message = env
        .channel()
        .await
        .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the dead letter");
    assert_eq!(message.delivery.data, job.encode());
    let headers = message
        .delivery
        .properties
        .headers()
        .clone()
        .expect("dead-letter headers");
    assert_eq!(
        header(&headers, "x-first-death-reason"),
        Some(&AMQPValue::LongString("delivery_limit".into())),
        "{headers:?}"
    );
    assert_eq!(
        env.queue_counts(&env.queues().send).await.map(|c| c.ready),
        Some(0)
    );
    assert!(env.sandbox.calls(PHONE).is_empty(), "WATI was never called");
}

/// Declares this test's send queue as classic, as a deployment before quorum queues did.
async fn an_existing_classic_send_queue(env: &TestEnv) {
    env.channel()
        .await
        .queue_declare(
            env.queues().send.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a classic queue");
}

#[tokio::test]
async fn a_send_queue_of_the_other_type_stops_api_and_worker_with_one_line() {
    let env = TestEnv::new().await;
    an_existing_classic_send_queue(&env).await;
    let send = env.queues().send;

    let api = match otp_api::build_state(&env.api_config()).await {
        Ok(_) => panic!("the api started on a classic queue with AMQP_QUEUE_TYPE=quorum"),
        Err(e) => e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let worker = match otp_worker::run(env.worker_config(), listener, std::future::pending()).await
    {
        Ok(()) => panic!("the worker ran on a classic queue with AMQP_QUEUE_TYPE=quorum"),
        Err(e) => e.to_string(),
    };
    for line in [api, worker] {
        assert!(
            line.starts_with(&format!(
                "queue {send} exists with another AMQP_QUEUE_TYPE ("
            )),
            "{line}"
        );
        assert!(
            line.contains("inequivalent arg") && !line.contains('\n'),
            "{line}"
        );
    }
}

#[tokio::test]
async fn classic_queues_still_carry_the_whole_flow_when_asked_for() {
    let mut env = TestEnv::new().await;
    an_existing_classic_send_queue(&env).await;
    let mut api = env.api_config();
    api.common.queue.queue_type = QueueType::Classic;
    let mut worker = env.worker_config();
    worker.common.queue.queue_type = QueueType::Classic;
    let _api = env.start_api_with(api).await;
    let _worker = env.start_worker_with(worker).await;
    let login = env.log_in(PHONE).await;
    assert_eq!(login["user"]["phone"], PHONE);
}
