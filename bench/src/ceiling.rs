//! The ceiling: the api's send path without HTTP. The same Redis script (through the
//! api's own `OtpStore`) and the same confirmed persistent publish (its `Publisher`),
//! at the same concurrency as the intake stage, into a queue of the type the stacks use
//! (`--amqp-queue-type`), so the intake's `ratio_to_ceiling` compares like with like.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use otp_api::config::Limits;
use otp_api::phone::PhoneNumber;
use otp_api::store::{OtpStore, SendDecision, StorePolicy};
use otp_shared::amqp::QueueNames;
use otp_shared::job::SendJob;
use otp_shared::publisher::Publisher;
use otp_shared::redis::keys::Keys;
use otp_shared::seal::CodeSealer;
use serde_json::{Value, json};

use crate::stats::summary;

pub async fn run(
    redis_url: &str,
    amqp_url: &str,
    prefix: &str,
    phones: &[PhoneNumber],
    concurrency: usize,
    queue_type: otp_shared::amqp::QueueType,
) -> anyhow::Result<Value> {
    let redis = otp_shared::redis::conn::connect(redis_url)
        .await
        .context("redis")?;
    let publisher = Arc::new(
        Publisher::connect(
            amqp_url,
            "otp-bench",
            QueueNames::new(prefix),
            otp_shared::amqp::QueueSettings {
                queue_type,
                delivery_limit: 20,
            },
            &[otp_shared::publisher::Target::Send],
        )
        .await
        .context("rabbitmq")?,
    );
    let store = OtpStore::new(
        redis,
        Keys::new(prefix),
        Arc::new(CodeSealer::new(crate::OTP_SECRET.as_bytes())),
        StorePolicy {
            ttl: Duration::from_secs(300),
            max_attempts: 3,
            wrong_guesses_per_phone: 100,
            limits: Limits {
                resend_cooldown: std::time::Duration::ZERO,
                max_sends_per_code: 5,
                phone_sends_per_hour: 10,
                ip_requests_per_minute: 0,
                ip_network_requests_per_minute: 0,
                sends_per_minute: 0,
                trusted_proxies: otp_api::client::TrustedProxies::default(),
            },
            unchecked_sends_per_hour: 0,
        },
    );
    let phones: Arc<[PhoneNumber]> = phones.into();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, publisher, phones, next) = (
                store.clone(),
                publisher.clone(),
                phones.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(phone) = phones.get(i) else { break };
                    let began = Instant::now();
                    let ok = async {
                        let code = otp_api::code::generate(6).ok()?;
                        let SendDecision::Accepted(send) = store
                            .begin_send(
                                phone,
                                &code,
                                uuid::Uuid::new_v4(),
                                otp_api::store::HowSent::default(),
                            )
                            .await
                            .ok()?
                        else {
                            return None;
                        };
                        let job = SendJob::new(
                            send.request_id,
                            send.code_id,
                            phone.clone(),
                            otp_shared::now_ms(),
                        );
                        publisher.publish(&job).await.ok()
                    }
                    .await;
                    match ok {
                        Some(()) => latencies.push(began.elapsed()),
                        None => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(phones.len());
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    Ok(json!({
        "stage": "ceiling",
        "requests": phones.len(),
        "concurrency": concurrency,
        "queue_type": queue_type.to_possible_value().map(|v| v.get_name().to_owned()),
        "per_second": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency": summary(&mut latencies),
        "errors": errors,
    }))
}
