//! Codes are never readable: not in any Redis value, not in a queued job.

use otp_e2e::TestEnv;

const PHONE: &str = "919876543210";

/// Every value under the test's prefix, whatever the key's type.
async fn all_redis_values(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    let mut redis = env.redis.clone();
    let mut values = Vec::new();
    for key in env.redis_keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("type");
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await
                    .expect("get"),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .expect("hgetall"),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut redis)
                .await
                .expect("zrange"),
            // Gone between the listing and the read (a lease released meanwhile).
            "none" => Vec::new(),
            other => panic!("unexpected key type {other} at {key}"),
        };
        values.extend(parts.into_iter().map(|v| (key.clone(), v)));
    }
    values
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_redis_value_and_no_queued_job_holds_the_code() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    // Ten digits: a chance match inside a timestamp or id is out of the question.
    config.otp_length = 10;
    let _api = env.start_api_with(config).await;
    assert_eq!(env.send_otp(PHONE).await.0, 202);

    let mut seen = all_redis_values(&env).await;
    assert!(
        seen.len() >= 5,
        "the code record and limits are stored: {}",
        seen.len()
    );
    let job = env.peek_send_queue().await;

    let _worker = env.start_worker().await;
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    assert_eq!(code.len(), 10);
    seen.extend(all_redis_values(&env).await);
    for (key, value) in &seen {
        assert!(
            !contains(value, code.as_bytes()),
            "the code in plain text at {key}"
        );
    }
    assert!(
        !contains(&job, code.as_bytes()),
        "the code in the queued job"
    );
    assert!(
        String::from_utf8_lossy(&job).contains("\"phone\":\"919876543210\""),
        "the scan read the real job"
    );
}
