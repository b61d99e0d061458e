//! One send, from start to final outcome: start it in the ledger, hand it to the
//! batcher, and act on each answer (record it sent, end it failed for good or expired,
//! or retry after a delay). What to do on each answer is decided by a pure function,
//! `step::next_step`, unit-tested without I/O; this module does the I/O around it.
//! Knows nothing of the broker, so it can be tested with Redis and a WATI sandbox alone.

use std::sync::Arc;
use std::time::Duration;

use otp_shared::job::SendJob;
use otp_shared::redis::conn::RedisConn;
use otp_shared::redis::keys::Keys;
use otp_shared::seal::CodeSealer;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::batcher::{Batcher, BatcherSettings, CallResult, Outgoing};
use crate::classify::Verdict;
use crate::config::{RetryConfig, WorkerConfig};
use crate::retry::RetrySchedule;
use crate::templates::Templates;
use crate::wati::WatiClient;
use otp_shared::redis::delivery::{Ending, GONE_REASON, Ledger, Start};
use otp_shared::redis::lease::Lease;
use otp_shared::redis::wati_budget::Budget;

mod step;

use step::{Step, TooLate, next_step};

/// A lease outlasts one call to WATI by this much.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Pauses between the tries to record a delivery WATI accepted (five tries in all).
const RECORD_PAUSES_MS: [u64; 4] = [50, 200, 1000, 2000];

/// Why a job goes back to the queue.
#[derive(Debug, thiserror::Error)]
pub enum Requeue {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("another worker is delivering a copy of this job")]
    CopyInProgress,
    #[error("the delivery lease lapsed")]
    LeaseLapsed,
    #[error("the worker is stopping")]
    Stopping,
}

impl Requeue {
    /// Whether handling the job failed in a way that may fail again (Redis refused a
    /// command: a damaged record, a bug), rather than "not now" (Redis unreachable or
    /// failing over, a copy in progress, stopping). Failures count against the queue's
    /// delivery limit.
    pub fn is_a_failure(&self) -> bool {
        match self {
            Self::Redis(e) => !otp_shared::redis::is_outage(e),
            Self::CopyInProgress | Self::LeaseLapsed | Self::Stopping => false,
        }
    }
}

/// How a job ended, which decides what the consumer does with its message.
#[derive(Debug)]
pub enum Outcome {
    /// WATI accepted the message. Ack.
    Sent,
    /// WATI refused for good; the code is deleted. Dead-letter, then ack.
    Failed { reason: String },
    /// The code expired before it could be handed to WATI. Ack.
    Expired,
    /// Nothing to do (already delivered, code gone, another worker took over). Ack.
    Dropped { why: &'static str },
    /// Not finished: give the message back to the queue.
    Requeue(Requeue),
}

impl Outcome {
    /// Every `outcome` label of the deliveries counter, each written here only: the
    /// worker starts them all at zero, so that the acceptance ratio and the alerts
    /// read them from the first delivery on.
    pub const LABELS: [&'static str; 4] = ["sent", "failed", "expired", "dropped"];

    /// The `outcome` label the job is counted under, or `None` for a job handed back
    /// to the queue: it is not over, and is counted when a later delivery ends it.
    pub fn label(&self) -> Option<&'static str> {
        // By position, so that a label added to LABELS fails to compile here until
        // it is given to an outcome.
        let [sent, failed, expired, dropped] = Self::LABELS;
        match self {
            Outcome::Sent => Some(sent),
            Outcome::Failed { .. } => Some(failed),
            Outcome::Expired => Some(expired),
            Outcome::Dropped { .. } => Some(dropped),
            Outcome::Requeue(_) => None,
        }
    }
}

/// Everything delivering a send needs.
pub struct Deliverer {
    ledger: Ledger,
    batcher: Batcher,
    sealer: Arc<CodeSealer>,
    retry: RetryConfig,
    /// Which template each send goes out in.
    templates: Templates,
    /// Becomes `true` when the worker is stopping: waits between attempts end early.
    shutdown: watch::Receiver<bool>,
}

impl Deliverer {
    /// Builds the deliverer of one worker and starts its batcher, which stops with
    /// `shutdown`; the batcher's task is returned, to be watched.
    pub fn start(
        config: &WorkerConfig,
        wati: WatiClient,
        redis: RedisConn,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let keys = Keys::new(&config.common.key_prefix);
        let budgets = &config.common.budgets;
        let (batcher, batcher_task) = Batcher::start(
            BatcherSettings {
                budget: Budget::new(redis.clone(), keys.clone(), budgets),
                wati,
                recipients_per_call: budgets.recipients_per_call,
            },
            shutdown.clone(),
        );
        let deliverer = Self {
            ledger: Ledger::new(
                redis,
                keys,
                config.common.otp_ttl,
                config.wati.timeout + LEASE_MARGIN,
            ),
            batcher,
            sealer: Arc::new(CodeSealer::new(
                config.common.otp_secret.expose_secret().as_bytes(),
            )),
            retry: config.retry.clone(),
            templates: config.wati.templates.clone(),
            shutdown,
        };
        (deliverer, batcher_task)
    }

    pub async fn deliver(&self, job: &SendJob) -> Outcome {
        let span = tracing::info_span!("job", request_id = %job.request_id, attempt = tracing::field::Empty);
        async {
            match self.start_and_send(job).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Requeue(Requeue::Redis(e)),
            }
        }
        .instrument(span)
        .await
    }

    async fn start_and_send(&self, job: &SendJob) -> redis::RedisResult<Outcome> {
        let lease = self.ledger.lease(job);
        let (sealed, time_left) = match self.ledger.start(job, &lease).await? {
            Start::Delivered => {
                return Ok(Outcome::Dropped {
                    why: "already delivered",
                });
            }
            Start::Failed { reason } => return Ok(Outcome::Failed { reason }),
            Start::Busy => return Ok(Outcome::Requeue(Requeue::CopyInProgress)),
            Start::Expired => return self.end(job, &lease, Ending::Expired, 0).await,
            Start::Gone => return self.end(job, &lease, Ending::Gone, 0).await,
            Start::Pending { sealed, time_left } => (sealed, time_left),
        };
        let deadline = Instant::now() + time_left;
        let outcome = lease
            .keep_during(self.send_until_final(job, &lease, &sealed, deadline))
            .await;
        if !matches!(outcome, Ok(Outcome::Sent)) {
            // Let a copy go ahead at once rather than after the lease lapses.
            lease.release().await;
        }
        outcome
    }

    /// Hands the send to the batcher until its outcome is final. The policy is
    /// [`next_step`]'s; this is the I/O around it.
    async fn send_until_final(
        &self,
        job: &SendJob,
        lease: &Lease,
        sealed: &[u8],
        deadline: Instant,
    ) -> redis::RedisResult<Outcome> {
        let Ok(code) = self.sealer.open(&job.phone, sealed) else {
            // Sealed with another OTP_SECRET: no worker with this key can ever send it.
            let reason = "code could not be opened (OTP_SECRET differs)".to_owned();
            let ending = Ending::Failed { reason, info: None };
            return self.end(job, lease, ending, 0).await;
        };
        let template = self.templates.pick(&job.locales).clone();
        let mut schedule = RetrySchedule::new(&self.retry);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            let outgoing = Outgoing {
                template: template.clone(),
                request_id: job.request_id,
                phone: job.phone.clone(),
                code: code.clone(),
                deadline,
                lease: lease.clone(),
            };
            let result = self.batcher.send(outgoing).await;
            if matches!(result, CallResult::Called(Verdict::Transient { .. })) {
                // The records that settle a send count its call; a call that leaves it
                // open is counted now, and before the clock is read: the time this
                // takes is taken from the code's life.
                self.ledger.count_call(job).await?;
            }
            let time_left = deadline.saturating_duration_since(Instant::now());
            let step = next_step(result, &mut schedule, time_left);
            if let Some(outcome) = self.take(job, lease, step).await? {
                return Ok(outcome);
            }
        }
    }

    /// Does what `step` says; `Some` once the send's outcome is final, `None` to go on
    /// with the next attempt.
    async fn take(
        &self,
        job: &SendJob,
        lease: &Lease,
        step: Step,
    ) -> redis::RedisResult<Option<Outcome>> {
        match step {
            Step::RecordSent => {
                self.record_sent(job, lease).await;
                Ok(Some(Outcome::Sent))
            }
            Step::Fail { reason, info } => {
                let ending = Ending::Failed { reason, info };
                self.end(job, lease, ending, 1).await.map(Some)
            }
            Step::Expire(too_late) => {
                match too_late {
                    TooLate::ForRetry(trouble) => {
                        let reason = trouble.reason();
                        tracing::warn!(%reason, "giving up: the code expires before the next attempt");
                    }
                    TooLate::ForBudget => {
                        tracing::warn!("giving up: no WATI budget before the code expires");
                    }
                }
                self.end(job, lease, Ending::Expired, 0).await.map(Some)
            }
            Step::Retry { delay, trouble } => {
                let reason = trouble.reason();
                tracing::warn!(%reason, delay_ms = delay.as_millis() as u64, "transient failure, will retry");
                metrics::counter!(otp_shared::metrics::RETRIES).increment(1);
                let stopped = !self.pause(delay).await;
                Ok(stopped.then_some(Outcome::Requeue(Requeue::Stopping)))
            }
            Step::Done(outcome) => Ok(Some(outcome)),
        }
    }

    /// Records a delivery WATI accepted. Never hands the job back: a requeued copy
    /// would send the code again, so a Redis failure here is retried, then given up.
    async fn record_sent(&self, job: &SendJob, lease: &Lease) {
        let since_accepted = otp_shared::now_ms().saturating_sub(job.accepted_at_ms);
        metrics::histogram!(otp_shared::metrics::ACCEPTED_TO_SENT)
            .record(since_accepted as f64 / 1000.0);
        let mut pauses = RECORD_PAUSES_MS.iter();
        loop {
            match self.ledger.mark_sent(job, lease).await {
                Ok(()) => {
                    tracing::info!("delivered");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "could not record a delivery yet"),
            }
            let Some(pause_ms) = pauses.next() else { break };
            tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
        }
        metrics::counter!(otp_shared::metrics::DELIVERY_RECORDS_LOST).increment(1);
        tracing::error!(
            "could not record a delivery WATI accepted; a copy of this job would send again"
        );
    }

    /// Ends a send that will not reach WATI; the outcome that goes with it.
    async fn end(
        &self,
        job: &SendJob,
        lease: &Lease,
        ending: Ending,
        calls: u32,
    ) -> redis::RedisResult<Outcome> {
        self.ledger.end(job, lease, &ending, calls).await?;
        Ok(match ending {
            Ending::Failed { reason, .. } => {
                tracing::warn!(%reason, "delivery failed for good");
                Outcome::Failed { reason }
            }
            Ending::Expired => Outcome::Expired,
            Ending::Gone => Outcome::Dropped { why: GONE_REASON },
        })
    }

    /// Waits `delay`; `false` if the worker began stopping meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = shutdown.wait_for(|stopping| *stopping) => false,
        }
    }
}

/// One of each outcome, for the tests of what is made of it here and in the consumer.
#[cfg(test)]
pub(crate) mod samples {
    use super::{GONE_REASON, Outcome, Requeue};

    /// A Redis error of an outage: the connection refused.
    pub(crate) fn outage() -> redis::RedisError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    /// A Redis error of a bug: a script answered something unexpected.
    pub(crate) fn bug() -> redis::RedisError {
        (
            redis::ErrorKind::UnexpectedReturnType,
            "a script answered nonsense",
        )
            .into()
    }

    /// Every outcome, with every reason to requeue (a Redis error both ways). The
    /// match has no catch-all arm, so a new variant fails to compile here until it
    /// is listed.
    pub(crate) fn every_outcome() -> Vec<Outcome> {
        let all = vec![
            Outcome::Sent,
            Outcome::Failed {
                reason: "WATI template not found".into(),
            },
            Outcome::Expired,
            Outcome::Dropped { why: GONE_REASON },
            Outcome::Requeue(Requeue::Redis(outage())),
            Outcome::Requeue(Requeue::Redis(bug())),
            Outcome::Requeue(Requeue::CopyInProgress),
            Outcome::Requeue(Requeue::LeaseLapsed),
            Outcome::Requeue(Requeue::Stopping),
        ];
        for outcome in &all {
            match outcome {
                Outcome::Sent
                | Outcome::Failed { .. }
                | Outcome::Expired
                | Outcome::Dropped { .. }
                | Outcome::Requeue(
                    Requeue::Redis(_)
                    | Requeue::CopyInProgress
                    | Requeue::LeaseLapsed
                    | Requeue::Stopping,
                ) => {}
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::samples::{bug, every_outcome, outage};
    use super::*;

    #[test]
    fn the_labels_are_unique_and_each_is_given_to_an_outcome() {
        let listed: HashSet<&str> = Outcome::LABELS.into_iter().collect();
        assert_eq!(listed.len(), Outcome::LABELS.len(), "{:?}", Outcome::LABELS);
        let given: HashSet<&str> = every_outcome().iter().filter_map(Outcome::label).collect();
        assert_eq!(given, listed);
    }

    #[test]
    fn a_job_over_is_counted_under_its_label_and_one_handed_back_is_not_counted() {
        for outcome in every_outcome() {
            let expected = match &outcome {
                // The words the dashboards and alerts read.
                Outcome::Sent => Some("sent"),
                Outcome::Failed { .. } => Some("failed"),
                Outcome::Expired => Some("expired"),
                Outcome::Dropped { .. } => Some("dropped"),
                Outcome::Requeue(_) => None,
            };
            assert_eq!(outcome.label(), expected, "{outcome:?}");
        }
    }

    #[test]
    fn only_a_redis_error_that_is_no_outage_is_a_failure() {
        assert!(Requeue::Redis(bug()).is_a_failure());
        assert!(!Requeue::Redis(outage()).is_a_failure());
        assert!(!Requeue::CopyInProgress.is_a_failure());
        assert!(!Requeue::LeaseLapsed.is_a_failure());
        assert!(!Requeue::Stopping.is_a_failure());
    }
}
