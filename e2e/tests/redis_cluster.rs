//! On the local Redis Cluster (`scripts/cluster up`, which the test fails without; three
//! masters, three replicas): the whole flow, the abuse limits and the fallback timers work,
//! with every script's keys in one hash slot. (A master's loss is `redis_failover.rs`: a test
//! binary of its own, so that no other test runs while a master is down.)

use otp_e2e::{TestEnv, clusters};
use serde_json::json;

/// Phones whose keys fall in each of the three masters' slots (checked below).
const PHONES: [&str; 3] = ["919876543210", "919812345678", "919811122233"];

/// The port of the master holding `phone`'s keys.
async fn master_of(env: &TestEnv, phone: &str) -> u16 {
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(phone).expect("a phone");
    clusters::redis_master_of(&env.keys().otp(&phone)).await
}

#[tokio::test]
async fn the_whole_flow_and_the_abuse_limits_work_on_a_redis_cluster() {
    let mut env = TestEnv::on_redis_cluster().await;
    let mut masters = std::collections::BTreeSet::new();
    for phone in PHONES {
        masters.insert(master_of(&env, phone).await);
    }
    assert_eq!(
        masters.len(),
        3,
        "the phones cover every master: {masters:?}"
    );
    let mut config = env.api_config();
    config.limits.resend_cooldown = std::time::Duration::from_secs(30);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;

    for phone in PHONES {
        let login = env.log_in(phone).await;
        let token = login["token"].as_str().expect("a token");
        let (status, me) = env.get("/api/auth/me", Some(token)).await;
        assert_eq!((status, &me["user"]["phone"]), (200, &json!(phone)));
        let (status, refreshed) = env
            .post(
                "/api/auth/refresh",
                json!({ "refreshToken": login["refreshToken"] }),
            )
            .await;
        assert_eq!(status, 200, "{refreshed}");
        let fresh = refreshed["token"].as_str().expect("a token");
        assert_eq!(env.logout(fresh).await, 204);
        assert_eq!(env.get("/api/auth/me", Some(fresh)).await.0, 401);
        assert_eq!(
            env.get("/api/auth/me", Some(token)).await.0,
            401,
            "the session ended"
        );

        // The cooldown holds: asking again at once is refused.
        let (status, body) = env.send_otp(phone).await;
        assert_eq!(
            (status, &body["code"]),
            (429, &json!("RATE_LIMITED")),
            "{body}"
        );
    }

    // The status of a send, found by its request id alone.
    let phone = "919811199900";
    let request_id = env.send_accepted(phone).await;
    env.wait_for_status(&request_id, "sent").await;
    let code = env.wait_for_messages(phone, 1).await[0].code.clone();

    // Wrong guesses count down, then the code is gone.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in [2, 1, 0] {
        let (status, body) = env.verify(phone, wrong).await;
        assert_eq!(
            (status, &body["attemptsRemaining"]),
            (401, &json!(left)),
            "{body}"
        );
    }
    let (status, body) = env.verify(phone, &code).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("TOO_MANY_ATTEMPTS")),
        "{body}"
    );
}

/// A `REDIS_URL` that names one node of the cluster is taken as the cluster's seed: keys
/// on every master answer, where one plain connection would get MOVED for most of them.
#[tokio::test]
async fn one_node_of_a_cluster_in_redis_url_connects_to_the_whole_cluster() {
    let env = TestEnv::on_redis_cluster().await;
    let mut redis = otp_shared::redis::connect("redis://127.0.0.1:7102")
        .await
        .expect("the cluster through one node");
    assert!(matches!(redis, otp_shared::redis::RedisConn::Cluster(_)));
    for phone in PHONES {
        let phone = otp_shared::phone::PhoneNumber::from_e164_digits(phone).expect("a phone");
        let key = env.keys().cooldown(&phone);
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(phone.as_str())
            .arg("EX")
            .arg(60)
            .query_async(&mut redis)
            .await
            .expect("a write on the key's master");
        let read: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("a read on the key's master");
        assert_eq!(read.as_deref(), Some(phone.as_str()));
    }
}

#[tokio::test]
async fn the_fallback_timers_are_set_claimed_and_removed_on_a_redis_cluster() {
    use otp_shared::redis::fallback_timers::{Claim, FallbackTimers};
    use std::time::Duration;
    let env = TestEnv::on_redis_cluster().await;
    let timers = FallbackTimers::new(env.redis.clone(), &env.keys());
    let jobs: Vec<_> = PHONES
        .iter()
        .map(|phone| {
            let phone = otp_shared::phone::PhoneNumber::from_e164_digits(phone).expect("a phone");
            otp_shared::job::SendJob::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), phone, 1)
        })
        .collect();
    timers.set(&jobs, Duration::ZERO).await.expect("set");
    let due = match timers
        .claim(10, Duration::from_secs(60))
        .await
        .expect("claim")
    {
        Claim::Due(due) => due,
        other => panic!("every timer ran out: {other:?}"),
    };
    let claimed: Vec<_> = due.iter().map(|t| t.job().expect("a job")).collect();
    assert_eq!(claimed.len(), jobs.len());
    assert!(jobs.iter().all(|j| claimed.contains(j)), "{claimed:?}");
    timers.done(&due).await.expect("done");
    assert_eq!(
        timers
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claim"),
        Claim::Empty
    );
}
