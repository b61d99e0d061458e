//! The harness says which service it could not reach, rather than skipping.

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
#[should_panic(expected = "Redis is not reachable")]
async fn a_missing_redis_fails_the_test_and_names_redis() {
    otp_e2e::redis_or_fail(&format!("redis://127.0.0.1:{}", closed_port())).await;
}

#[tokio::test]
#[should_panic(expected = "RabbitMQ is not reachable")]
async fn a_missing_rabbitmq_fails_the_test_and_names_rabbitmq() {
    otp_e2e::rabbitmq_or_fail(&format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        closed_port()
    ))
    .await;
}
