//! One job, start to final outcome: load the code, call WATI, retry transient failures
//! until the code expires, record every step in the job's status. Knows nothing of the
//! broker, so it can be tested with Redis and a fake WATI alone.

use std::sync::Arc;

use otp_shared::job::SendJob;
use otp_shared::seal::CodeSealer;
use otp_shared::status::{DeliveryState, StatusStore};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::classify::{Verdict, classify, result_class};
use crate::codes::{CodeLookup, CodeStore, Lease, Retire};
use crate::config::RetryConfig;
use crate::retry::RetrySchedule;
use crate::send_rate::SendRate;
use crate::wati::WatiClient;

/// The reason given when a code expires before it could be delivered.
pub const EXPIRED_REASON: &str = "Failed to send OTP";

/// How a job ended, which decides what the consumer does with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// WATI accepted the message. Ack.
    Sent,
    /// WATI refused for good; the code is deleted. Dead-letter, then ack.
    Failed { reason: String },
    /// The code expired before it could be delivered. Ack.
    Expired,
    /// Nothing to do (already delivered, code gone or replaced). Ack.
    Dropped { why: &'static str },
    /// Not finished (Redis unreachable, or shutting down between attempts): give the
    /// message back to the queue.
    Requeue { why: String },
}

/// Everything processing a job needs.
pub struct Processor {
    pub codes: CodeStore,
    pub statuses: StatusStore,
    pub wati: WatiClient,
    /// The shared WATI send rate; `None` when unlimited.
    pub send_rate: Option<SendRate>,
    pub sealer: Arc<CodeSealer>,
    pub retry: RetryConfig,
    /// How long a delivery lease covers one WATI call: the call's timeout and a margin.
    pub lease: std::time::Duration,
    /// Becomes `true` when the worker is stopping: waits between attempts end early.
    pub shutdown: watch::Receiver<bool>,
}

impl Processor {
    pub async fn process(&self, job: &SendJob) -> Outcome {
        let span = tracing::info_span!("job", request_id = %job.request_id, attempt = tracing::field::Empty);
        async {
            match self.deliver(job).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Requeue {
                    why: format!("redis: {e}"),
                },
            }
        }
        .instrument(span)
        .await
    }

    async fn deliver(&self, job: &SendJob) -> redis::RedisResult<Outcome> {
        let request_id = job.request_id.to_string();
        let owner = uuid::Uuid::new_v4().to_string();
        let stored = match self.codes.start_delivery(job, &owner, self.lease).await? {
            CodeLookup::Delivered => {
                return Ok(Outcome::Dropped {
                    why: "already delivered",
                });
            }
            CodeLookup::Failed { reason } => return Ok(Outcome::Failed { reason }),
            CodeLookup::Busy => {
                return Ok(Outcome::Requeue {
                    why: "another worker is delivering a copy of this job".into(),
                });
            }
            CodeLookup::Pending(stored) => stored,
            CodeLookup::Expired => return self.expire(job).await,
            CodeLookup::Gone => {
                let why = "code no longer pending";
                self.statuses
                    .set(&request_id, DeliveryState::Expired, Some(why), None)
                    .await?;
                return Ok(Outcome::Dropped { why });
            }
        };
        let outcome = self.send_until_final(job, &stored, &owner).await;
        if !matches!(outcome, Ok(Outcome::Sent)) {
            // Sent released it already; otherwise let a copy go ahead at once. Best
            // effort: a lease that is not released just lapses.
            let _ = self
                .codes
                .hold_lease(job.request_id, &owner, std::time::Duration::ZERO)
                .await;
        }
        outcome
    }

    /// Calls WATI until the outcome is final, holding the delivery lease throughout.
    async fn send_until_final(
        &self,
        job: &SendJob,
        stored: &crate::codes::StoredCode,
        owner: &str,
    ) -> redis::RedisResult<Outcome> {
        let request_id = job.request_id.to_string();
        let Ok(code) = self.sealer.open(&job.phone, &stored.sealed) else {
            // Sealed with another OTP_SECRET: no worker with this key can ever send it.
            return self
                .fail(
                    job,
                    "code could not be opened (OTP_SECRET differs)".into(),
                    None,
                )
                .await;
        };
        let deadline = Instant::now() + stored.time_left;
        let broadcast_name = format!("otp_{}", job.request_id.simple());
        let mut schedule = RetrySchedule::new(&self.retry);
        let mut attempt = 0u32;
        loop {
            let time_left = deadline.saturating_duration_since(Instant::now());
            if time_left.is_zero() {
                return self.expire(job).await;
            }
            if let Some(rate) = &self.send_rate {
                let reserved = rate.reserve(time_left).await?;
                if let Some(wait) = reserved {
                    metrics::histogram!(otp_shared::metrics::SEND_RATE_WAIT).record(wait);
                }
                let Some(wait) = reserved else {
                    tracing::warn!("giving up: no WATI send slot before the code expires");
                    return self.expire(job).await;
                };
                if let Some(outcome) = self.keep_lease(job, owner, wait).await? {
                    return Ok(outcome);
                }
                if !self.pause(wait).await {
                    return Ok(Outcome::Requeue {
                        why: "worker stopping".into(),
                    });
                }
            }
            // The wait for a slot may have used up the code's life.
            let time_left = deadline.saturating_duration_since(Instant::now());
            if time_left.is_zero() {
                return self.expire(job).await;
            }
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            if attempt > 1 {
                metrics::counter!(otp_shared::metrics::RETRIES).increment(1);
            }
            let started = std::time::Instant::now();
            let reply = self
                .wati
                .send(&job.phone, &code, &broadcast_name, time_left)
                .await;
            metrics::histogram!(otp_shared::metrics::WATI_DURATION).record(started.elapsed());
            metrics::counter!(otp_shared::metrics::WATI_REQUESTS, "result" => result_class(&reply))
                .increment(1);
            let verdict = classify(&reply);
            // A call is counted once it has returned; a delivered one by finish_delivery.
            if verdict != Verdict::Delivered {
                self.statuses.count_attempt(&request_id).await?;
            }
            match verdict {
                Verdict::Delivered => {
                    let since_accepted = otp_shared::now_ms().saturating_sub(job.accepted_at_ms);
                    metrics::histogram!(otp_shared::metrics::ACCEPTED_TO_SENT)
                        .record(since_accepted as f64 / 1000.0);
                    self.record_delivered(job).await;
                    tracing::info!("delivered");
                    return Ok(Outcome::Sent);
                }
                Verdict::Permanent { reason, info } => {
                    return self.fail(job, reason, info.as_deref()).await;
                }
                Verdict::Transient {
                    reason,
                    retry_after,
                } => {
                    let time_left = deadline.saturating_duration_since(Instant::now());
                    let Some(delay) = schedule.next_delay(retry_after, time_left) else {
                        tracing::warn!(%reason, "giving up: the code expires before the next attempt");
                        return self.expire(job).await;
                    };
                    tracing::warn!(%reason, delay_ms = delay.as_millis() as u64, "transient failure, will retry");
                    if let Some(outcome) = self.keep_lease(job, owner, delay).await? {
                        return Ok(outcome);
                    }
                    if !self.pause(delay).await {
                        return Ok(Outcome::Requeue {
                            why: "worker stopping".into(),
                        });
                    }
                }
            }
        }
    }

    /// Extends the lease over a wait and the call after it. `Some(outcome)` when this
    /// worker must stop: another holds the lease (and will finish the job), or it
    /// lapsed (the job goes back to the queue, where the start checks run again).
    async fn keep_lease(
        &self,
        job: &SendJob,
        owner: &str,
        wait: std::time::Duration,
    ) -> redis::RedisResult<Option<Outcome>> {
        Ok(
            match self
                .codes
                .hold_lease(job.request_id, owner, wait + self.lease)
                .await?
            {
                Lease::Held => None,
                Lease::TakenByAnother => Some(Outcome::Dropped {
                    why: "another worker took over",
                }),
                Lease::Lapsed => Some(Outcome::Requeue {
                    why: "the delivery lease lapsed".into(),
                }),
            },
        )
    }

    /// Records a delivery WATI accepted. Never hands the job back: a requeued copy
    /// would send the code again, so a Redis failure here is retried, then given up.
    async fn record_delivered(&self, job: &SendJob) {
        for pause_ms in [50, 200, 1000, 2000] {
            match self.codes.finish_delivery(job).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a delivery yet");
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                }
            }
        }
        tracing::error!(
            "could not record a delivery WATI accepted; a copy of this job would send again"
        );
    }

    /// Waits `delay`; `false` if the worker began stopping meanwhile.
    async fn pause(&self, delay: std::time::Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = shutdown.wait_for(|stopping| *stopping) => false,
        }
    }

    async fn fail(
        &self,
        job: &SendJob,
        reason: String,
        info: Option<&str>,
    ) -> redis::RedisResult<Outcome> {
        self.codes
            .retire(&job.phone, job.code_id, Retire::Delete)
            .await?;
        self.statuses
            .set(
                &job.request_id.to_string(),
                DeliveryState::Failed,
                Some(&reason),
                info,
            )
            .await?;
        tracing::warn!(%reason, "delivery failed for good");
        Ok(Outcome::Failed { reason })
    }

    async fn expire(&self, job: &SendJob) -> redis::RedisResult<Outcome> {
        self.codes
            .retire(&job.phone, job.code_id, Retire::Expire)
            .await?;
        self.statuses
            .set(
                &job.request_id.to_string(),
                DeliveryState::Expired,
                Some(EXPIRED_REASON),
                None,
            )
            .await?;
        Ok(Outcome::Expired)
    }
}
