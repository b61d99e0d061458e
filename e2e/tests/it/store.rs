//! The code store's scripts directly, on the real Redis: cases that need an exact
//! interleaving the HTTP api cannot be made to produce on demand.

use std::sync::Arc;
use std::time::Duration;

use otp_api::phone::PhoneNumber;
use otp_api::store::HowSent;
use otp_api::store::{OtpStore, SendDecision, SendKind, StorePolicy, VerifyOutcome};
use otp_e2e::TestEnv;
use otp_shared::seal::CodeSealer;

fn store(env: &TestEnv) -> OtpStore {
    let config = env.api_config();
    OtpStore::new(
        env.redis.clone(),
        env.keys(),
        Arc::new(CodeSealer::new(otp_e2e::OTP_SECRET.as_bytes())),
        StorePolicy {
            ttl: Duration::from_secs(300),
            max_attempts: 3,
            wrong_guesses_per_phone: config.wrong_guesses_per_phone,
            limits: config.limits,
            unchecked_sends_per_hour: 0,
        },
    )
}

async fn accepted(
    store: &OtpStore,
    phone: &PhoneNumber,
    code: &str,
) -> otp_api::store::AcceptedSend {
    match store
        .begin_send(phone, code, uuid::Uuid::new_v4(), HowSent::default())
        .await
        .expect("redis")
    {
        SendDecision::Accepted(send) => send,
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test]
async fn undoing_a_new_code_keeps_it_when_a_re_send_already_uses_it() {
    let env = TestEnv::new().await;
    let store = store(&env);
    let phone = otp_api::phone::parse("919876543210").expect("valid");
    // Request A stores a new code; request B re-sends it; then A's publish fails.
    let first = accepted(&store, &phone, "123456").await;
    assert_eq!(first.kind, SendKind::New);
    let second = accepted(&store, &phone, "999999").await;
    assert_eq!(second.kind, SendKind::Resend);
    store.undo_send(&phone, &first).await.expect("redis");
    // B's job still has its code.
    assert_eq!(
        store
            .verify(&phone, "123456", None, None, uuid::Uuid::new_v4())
            .await
            .expect("redis"),
        VerifyOutcome::Verified {
            by_sms: false,
            code_id: first.code_id
        }
    );
}

#[tokio::test]
async fn undoing_a_lone_new_code_removes_it() {
    let env = TestEnv::new().await;
    let store = store(&env);
    let phone = otp_api::phone::parse("919876543210").expect("valid");
    let first = accepted(&store, &phone, "123456").await;
    store.undo_send(&phone, &first).await.expect("redis");
    assert_eq!(
        store
            .verify(&phone, "123456", None, None, uuid::Uuid::new_v4())
            .await
            .expect("redis"),
        VerifyOutcome::NotFound
    );
    assert_eq!(
        env.redis_keys().await,
        Vec::<String>::new(),
        "limits given back too"
    );
}
