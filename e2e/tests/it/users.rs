//! Users and refresh sessions in PostgreSQL: a phone keeps its user id and a login its
//! session whatever happens to Redis; concurrent first logins make one user; PostgreSQL
//! going away costs a 503 but not the code; refresh tokens work once, and a reused one
//! ends its session.

use std::time::Duration;

use otp_e2e::proxy::Proxy;
use otp_e2e::{DEADLINE, TestEnv, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

const PHONE: &str = "919876543210";

/// An api and a worker on a fresh test environment.
async fn started() -> (TestEnv, otp_e2e::Running, otp_e2e::Running) {
    let mut env = TestEnv::new().await;
    let api = env.start_api().await;
    let worker = env.start_worker().await;
    (env, api, worker)
}

async fn refresh(env: &TestEnv, token: &Value) -> (u16, Value) {
    env.post("/api/auth/refresh", json!({ "refreshToken": token }))
        .await
}

/// The test database's pool, and a user store on it (access and refresh tokens live a
/// minute).
async fn user_store(env: &TestEnv) -> (sqlx::PgPool, otp_api::users::UserStore) {
    let pool = otp_api::db::connect(&env.database_url)
        .await
        .expect("the test database");
    let users = otp_api::users::UserStore::new(
        pool.clone(),
        env.redis.clone(),
        env.keys(),
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    (pool, users)
}

async fn delete_every_redis_key(env: &TestEnv) {
    let keys = env.redis_keys().await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut env.redis.clone())
            .await
            .expect("delete the test's keys");
    }
    assert!(env.redis_keys().await.is_empty());
}

#[tokio::test]
async fn a_phone_keeps_its_user_id_when_redis_loses_everything() {
    let (env, _api, _worker) = started().await;
    let first = env.log_in(PHONE).await;
    assert_eq!(first["isNewUser"], true);
    delete_every_redis_key(&env).await;
    let second = env.log_in(PHONE).await;
    assert_eq!(second["isNewUser"], false);
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert_eq!(second["user"]["createdAt"], first["user"]["createdAt"]);
}

#[tokio::test]
async fn a_refresh_token_survives_a_redis_flush() {
    let (env, _api, _worker) = started().await;
    let login = env.log_in(PHONE).await;
    delete_every_redis_key(&env).await;
    // The access token's session was in Redis: gone. The refresh session was not.
    let old_token = login["token"].as_str().expect("token");
    assert_eq!(env.get("/api/auth/me", Some(old_token)).await.0, 401);
    let (status, body) = refresh(&env, &login["refreshToken"]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a new access token");
    let (status, me) = env.get("/api/auth/me", Some(token)).await;
    assert_eq!((status, &me["user"]["id"]), (200, &login["user"]["id"]));
}

#[tokio::test]
async fn thirty_concurrent_first_logins_of_one_phone_make_one_user() {
    let env = TestEnv::new().await;
    let (pool, users) = user_store(&env).await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("phone");
    // Each with a code of its own.
    let logins =
        futures_util::future::join_all((0..30).map(|_| users.login(&phone, Uuid::new_v4()))).await;
    let logins: Vec<_> = logins.into_iter().map(|l| l.expect("a login")).collect();
    assert!(logins.iter().all(|l| l.user.id == logins[0].user.id));
    assert_eq!(logins.iter().filter(|l| l.is_new).count(), 1);
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    // Thirty logins, thirty sessions of the one user.
    let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM refresh_sessions")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(sessions, 30);
}

/// An api that reaches PostgreSQL through a proxy the test controls, a worker, and a
/// code delivered to [`PHONE`].
async fn delivered_behind_a_postgresql_proxy()
-> (TestEnv, Proxy, otp_e2e::Running, otp_e2e::Running, String) {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let mut config = env.api_config();
    config.database_url = env
        .database_url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port()));
    let api = env.start_api_with(config).await;
    let worker = env.start_worker().await;
    env.send_accepted(PHONE).await;
    let code = env.wait_for_messages(PHONE, 1).await[0].code.clone();
    (env, proxy, api, worker, code)
}

/// Gives PostgreSQL back and checks that the code refused meanwhile logs the user in
/// (for the first time: nothing was written while it was away).
async fn the_same_code_logs_in_once_it_is_back(env: &TestEnv, proxy: &Proxy, code: &str) {
    proxy.restore();
    let body = eventually("the same code to verify", DEADLINE, || async {
        let (status, body) = env.verify(PHONE, code).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["isNewUser"], true);
}

#[tokio::test]
async fn without_postgresql_verify_answers_503_and_the_same_code_works_once_it_is_back() {
    let (env, proxy, _api, _worker, code) = delivered_behind_a_postgresql_proxy().await;

    proxy.cut();
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("UNAVAILABLE")),
        "{body}"
    );
    let (status, ready) = env.get("/readyz", None).await;
    assert_eq!((status, &ready["postgres"]), (503, &json!("down")));

    the_same_code_logs_in_once_it_is_back(&env, &proxy, &code).await;
}

#[tokio::test]
async fn running_the_migrations_again_changes_nothing() {
    let env = TestEnv::new().await;
    let pool = otp_api::db::connect(&env.database_url)
        .await
        .expect("the test database");
    let schema = || async {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .expect("read the schema");
        columns
    };
    let before = schema().await;
    assert!(before.iter().any(|(t, c)| t == "users" && c == "phone"));
    otp_api::db::migrate(&pool).await.expect("again");
    otp_api::db::connect(&env.database_url)
        .await
        .expect("and from a new start");
    assert_eq!(schema().await, before);
}

#[tokio::test]
async fn a_refresh_token_works_once_and_a_reused_one_ends_its_session() {
    let (env, _api, _worker) = started().await;
    let login = env.log_in(PHONE).await;
    let first = login["refreshToken"].clone();
    let (status, rotated) = refresh(&env, &first).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refreshToken"], first);
    // The first token again: someone holds a copy, so the whole session ends...
    let (status, body) = refresh(&env, &first).await;
    assert_eq!((status, &body["code"]), (401, &json!("UNAUTHORIZED")));
    // ...including the token it had been rotated to.
    assert_eq!(refresh(&env, &rotated["refreshToken"]).await.0, 401);
    // Unknown tokens and bad bodies.
    assert_eq!(refresh(&env, &json!("f".repeat(64))).await.0, 401);
    let (status, body) = env
        .post("/api/auth/refresh", json!({"refreshToken": 7}))
        .await;
    assert_eq!((status, &body["code"]), (400, &json!("INVALID_REQUEST")));
}

#[tokio::test]
async fn logout_ends_the_refresh_session_too() {
    let (env, _api, _worker) = started().await;
    let login = env.log_in(PHONE).await;
    let token = login["token"].as_str().expect("token");
    assert_eq!(env.logout(token).await, 204);
    assert_eq!(env.get("/api/auth/me", Some(token)).await.0, 401);
    assert_eq!(refresh(&env, &login["refreshToken"]).await.0, 401);
}

#[tokio::test]
async fn an_ended_session_takes_every_access_token_it_gave_out_with_it() {
    let (env, _api, _worker) = started().await;
    // A thief refreshes with a stolen token first; the owner's copy then comes back.
    let login = env.log_in(PHONE).await;
    let stolen = login["refreshToken"].clone();
    let (status, thief) = refresh(&env, &stolen).await;
    assert_eq!(status, 200, "{thief}");
    let thief_token = thief["token"].as_str().expect("token");
    assert_eq!(env.get("/api/auth/me", Some(thief_token)).await.0, 200);
    assert_eq!(refresh(&env, &stolen).await.0, 401);
    // Reuse ended the session: the thief's access token goes with it, and the owner's.
    assert_eq!(env.get("/api/auth/me", Some(thief_token)).await.0, 401);
    let owner_token = login["token"].as_str().expect("token");
    assert_eq!(env.get("/api/auth/me", Some(owner_token)).await.0, 401);

    // Logging out with one access token ends the others of its session too.
    let login = env.log_in(PHONE).await;
    let (_, rotated) = refresh(&env, &login["refreshToken"]).await;
    let second = rotated["token"].as_str().expect("token");
    assert_eq!(env.get("/api/auth/me", Some(second)).await.0, 200);
    assert_eq!(
        env.logout(login["token"].as_str().expect("token")).await,
        204
    );
    assert_eq!(env.get("/api/auth/me", Some(second)).await.0, 401);
}

#[tokio::test]
async fn a_refresh_that_redis_could_not_record_leaves_the_refresh_token_usable() {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut config = env.api_config();
    config.common.redis_url = format!("redis://127.0.0.1:{}", proxy.port());
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    let login = env.log_in(PHONE).await;

    proxy.cut();
    let (status, body) = refresh(&env, &login["refreshToken"]).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("UNAVAILABLE")),
        "{body}"
    );
    proxy.restore();
    // The retry with the same token is not taken for reuse: it was never spent.
    let body = eventually("the refresh to work", DEADLINE, || async {
        let (status, body) = refresh(&env, &login["refreshToken"]).await;
        assert_ne!(status, 401, "{body}");
        (status == 200).then_some(body)
    })
    .await;
    let token = body["token"].as_str().expect("a new access token");
    assert_eq!(env.get("/api/auth/me", Some(token)).await.0, 200);
}

#[tokio::test]
async fn a_postgresql_that_hangs_costs_a_503_in_seconds_and_not_the_code() {
    let (env, proxy, _api, _worker, code) = delivered_behind_a_postgresql_proxy().await;

    // Packets go nowhere: the login's query gets no answer at all.
    proxy.stall();
    let asked = std::time::Instant::now();
    let (status, body) = env.verify(PHONE, &code).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("UNAVAILABLE")),
        "{body}"
    );
    assert!(
        asked.elapsed() < otp_api::db::QUERY_TIMEOUT + Duration::from_secs(2),
        "answered after {:?}",
        asked.elapsed()
    );

    the_same_code_logs_in_once_it_is_back(&env, &proxy, &code).await;
}

#[tokio::test]
async fn a_retried_first_login_with_the_same_code_is_still_new_and_a_later_one_is_not() {
    let env = TestEnv::new().await;
    let (_, users) = user_store(&env).await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("phone");
    let code = Uuid::new_v4();
    let first = users.login(&phone, code).await.expect("a login");
    assert!(first.is_new);
    // The first login's answer was lost (a late COMMIT answer: the api said 503 and gave
    // the code back); the app retries with the same code. Before, it heard "not new",
    // and an app that onboards new users skipped onboarding.
    let retried = users.login(&phone, code).await.expect("a login");
    assert!(
        retried.is_new,
        "the retry of the first login is the first login"
    );
    assert_eq!(retried.user.id, first.user.id);
    let later = users.login(&phone, Uuid::new_v4()).await.expect("a login");
    assert!(
        !later.is_new,
        "a login with another code is a returning one"
    );
}

#[tokio::test]
async fn a_user_made_before_first_codes_were_kept_logs_in_as_a_returning_one() {
    let env = TestEnv::new().await;
    let (pool, users) = user_store(&env).await;
    let id = Uuid::new_v4();
    // As migration 0002 left every user that was already there: no first code.
    sqlx::query("INSERT INTO users (id, phone) VALUES ($1, $2)")
        .bind(id)
        .bind(PHONE)
        .execute(&pool)
        .await
        .expect("a user from before migration 0002");
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("phone");
    // Before, `first_code = $6` was NULL for such a user, and the login a 500.
    let login = users
        .login(&phone, Uuid::new_v4())
        .await
        .expect("an old user logs in");
    assert_eq!(login.user.id, id);
    assert!(!login.is_new, "an old user is a returning one");
}

#[tokio::test]
async fn the_purges_lookups_can_read_an_index() {
    let env = TestEnv::new().await;
    let pool = otp_api::db::connect(&env.database_url)
        .await
        .expect("the test database");
    let mut connection = pool.acquire().await.expect("a connection");
    // With sequential scans priced out, a plan that still has one has no index to use.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *connection)
        .await
        .expect("set");
    for lookup in [
        "EXPLAIN SELECT id FROM refresh_sessions
             WHERE expires_at < now() - interval '1 day'
                OR revoked_at < now() - interval '1 day' LIMIT 1000",
        "EXPLAIN SELECT token_hash FROM refresh_tokens
             WHERE used_at < now() - interval '1 day' LIMIT 1000",
    ] {
        let plan: Vec<(String,)> = sqlx::query_as(lookup)
            .fetch_all(&mut *connection)
            .await
            .expect("a plan");
        let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
        assert!(
            !plan.iter().any(|line| line.contains("Seq Scan")),
            "{lookup}:\n{}",
            plan.join("\n")
        );
    }
}

#[tokio::test]
async fn a_refresh_whose_commit_answers_too_late_is_answered_as_the_rotation_it_was() {
    let env = TestEnv::new().await;
    let (pool, users) = user_store(&env).await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("phone");
    let login = users.login(&phone, Uuid::new_v4()).await.expect("a login");
    // From now on a COMMIT that writes a refresh token takes 4 s, past the api's 3 s
    // wait for PostgreSQL: a COMMIT whose answer comes too late (this test's database
    // only).
    for statement in [
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON refresh_tokens
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("a slow commit");
    }
    let otp_api::users::Refresh::Rotating(pending) =
        users.refresh(&login.refresh_token).await.expect("postgres")
    else {
        panic!("a live refresh token")
    };
    // Before, the api answered 503 here though the token was spent, and the client's
    // retry with it was taken as reuse and ended the session.
    let next = pending
        .commit()
        .await
        .expect("the rotation landed, and is answered as such");
    sqlx::query("DROP TRIGGER slow_commit ON refresh_tokens")
        .execute(&pool)
        .await
        .expect("commits are fast again");
    let otp_api::users::Refresh::Rotating(again) = users.refresh(&next).await.expect("postgres")
    else {
        panic!("the successor is live, and its session too")
    };
    again.commit().await.expect("rotates");
}

#[tokio::test]
async fn old_sessions_and_spent_tokens_are_purged_in_bounded_batches_and_live_ones_kept() {
    let env = TestEnv::new().await;
    let (pool, users) = user_store(&env).await;
    let phone = otp_shared::phone::PhoneNumber::from_e164_digits(PHONE).expect("phone");
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(users.login(&phone, Uuid::new_v4()).await.expect("a login"));
    }
    // Three ended two days ago, two expired two days ago, three live; one live session
    // rotated its token two days ago, another just now.
    let age = |sql: &'static str, ids: Vec<Uuid>| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .bind(ids)
                .execute(&pool)
                .await
                .expect("aged");
        }
    };
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.session_id).collect();
    age(
        "UPDATE refresh_sessions SET revoked_at = now() - interval '2 days' WHERE id = ANY($1)",
        ids[0..3].to_vec(),
    )
    .await;
    age(
        "UPDATE refresh_sessions SET expires_at = now() - interval '2 days' WHERE id = ANY($1)",
        ids[3..5].to_vec(),
    )
    .await;
    for (session, days_ago) in [(&sessions[5], 2), (&sessions[6], 0)] {
        let otp_api::users::Refresh::Rotating(pending) = users
            .refresh(&session.refresh_token)
            .await
            .expect("postgres")
        else {
            panic!("live")
        };
        pending.commit().await.expect("rotates");
        sqlx::query(
            "UPDATE refresh_tokens SET used_at = now() - make_interval(days => $2)
             WHERE session_id = $1 AND used_at IS NOT NULL",
        )
        .bind(session.session_id)
        .bind(days_ago)
        .execute(&pool)
        .await
        .expect("aged");
    }
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.expect("count");
            n
        }
    };
    let tokens_before = count("SELECT count(*) FROM refresh_tokens").await;
    // One statement of each kind, two rows each: bounded.
    let first = users.purge(2, 1).await.expect("purged");
    assert_eq!((first.sessions, first.tokens), (2, 1));
    // The rest, in rounds of two.
    let rest = users.purge(2, 10).await.expect("purged");
    assert_eq!(rest.sessions, 3, "five old sessions in all");
    assert_eq!(count("SELECT count(*) FROM refresh_sessions").await, 3);
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM refresh_sessions")
        .fetch_all(&pool)
        .await
        .expect("sessions");
    for live in &ids[5..8] {
        assert!(left.contains(live), "a live session stays");
    }
    // Five sessions' tokens went with them, and one token spent two days ago; the one
    // spent just now stays, so its replay still ends its session.
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens").await,
        tokens_before - 5 - 1
    );
    assert_eq!(
        users.purge(2, 10).await.expect("purged"),
        Default::default()
    );
}

#[tokio::test]
async fn refreshes_are_limited_per_session_and_per_client_address() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let login = env.log_in(PHONE).await;
    let mut refresh_token = login["refreshToken"].as_str().expect("token").to_owned();
    let refresh = |token: String| {
        let env = &env;
        async move {
            env.post("/api/auth/refresh", json!({ "refreshToken": token }))
                .await
        }
    };
    for _ in 0..otp_api::routes::REFRESHES_PER_SESSION_PER_MINUTE {
        let (status, body) = refresh(refresh_token.clone()).await;
        assert_eq!(status, 200, "{body}");
        refresh_token = body["refreshToken"].as_str().expect("next").to_owned();
    }
    let (status, body) = refresh(refresh_token.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );

    // From one address, refreshes count against IP_REQUESTS_PER_MINUTE with sign-ins.
    let mut limited = TestEnv::new().await;
    let mut config = limited.api_config();
    config.limits.ip_requests_per_minute = 4;
    let _api = limited.start_api_with(config).await;
    let _worker = limited.start_worker().await;
    let login = limited.log_in(PHONE).await; // two requests
    let token = login["refreshToken"].as_str().expect("token").to_owned();
    let (status, body) = limited
        .post("/api/auth/refresh", json!({ "refreshToken": token }))
        .await;
    assert_eq!(status, 200, "{body}");
    let next = body["refreshToken"].as_str().expect("next").to_owned();
    let (status, _) = limited
        .post("/api/auth/refresh", json!({ "refreshToken": next.clone() }))
        .await;
    assert_eq!(status, 200, "the fourth request");
    let (status, body) = limited
        .post("/api/auth/refresh", json!({ "refreshToken": "any" }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
}
