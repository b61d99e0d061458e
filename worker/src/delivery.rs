//! One send, from start to final outcome: start it in the ledger, hand it to its
//! courier (WhatsApp's batcher, or Twilio), and act on each answer (record it sent, end
//! it failed for good or expired, or retry after a delay). What to do on each answer is
//! decided by a pure function, `step::next_step`, unit-tested without I/O; this module
//! does the I/O around it. A WhatsApp send that fails for good, or that no receipt
//! confirms in time, may fall back to SMS. Knows nothing of the broker's consumers, so
//! it can be tested with Redis and the sandbox alone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use otp_shared::events::{Emitter, Event, EventData, EventType};
use otp_shared::job::{JobChannel, SendJob};
use otp_shared::publisher::PublishError;
use otp_shared::redis::conn::RedisConn;
use otp_shared::redis::keys::Keys;
use otp_shared::seal::{CodeSealer, PlainCode};
use otp_shared::senders::SentFrom;
use otp_shared::sms_fallback::{FallbackError, FellBack, SmsFallback, Trigger};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::batcher::{Batcher, BatcherSettings, CallResult, Outgoing};
use crate::classify::{Provider, Refusal, Verdict};
use crate::config::{RetryConfig, WorkerConfig};
use crate::fallback_timer::Timers;
use crate::retry::RetrySchedule;
use crate::templates::Templates;
use crate::wati::WatiClient;
use otp_shared::redis::delivery::{Ending, GONE_REASON, Ledger, Start};
use otp_shared::redis::lease::Lease;
use otp_shared::redis::wati_budget::Budget;

pub(crate) mod step;

use step::{Step, TooLate, next_step};

/// How long one hold of a delivery lease lasts. It is renewed every third of that while
/// the delivery runs (calls included), so it need not outlast a call: what it bounds is
/// how long a killed worker's job waits before another worker may deliver it. (A live
/// worker cut off from Redis for longer could meet a copy; one cut off from Redis
/// cannot record its delivery either, so the copy would send again however long the
/// lease.)
const LEASE_TTL: Duration = Duration::from_secs(4);
/// Longest single wait for another worker's lease on a copy of a job.
const BUSY_PAUSE: Duration = Duration::from_millis(500);
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
    #[error("the SMS job could not be published: {0}")]
    Broker(#[from] PublishError),
}

impl Requeue {
    /// Whether handling the job failed in a way that may fail again (Redis refused a
    /// command: a damaged record, a bug), rather than "not now" (Redis unreachable or
    /// failing over, a copy in progress, stopping). Failures count against the queue's
    /// delivery limit.
    pub fn is_a_failure(&self) -> bool {
        match self {
            Self::Redis(e) => !otp_shared::redis::is_outage(e),
            Self::CopyInProgress | Self::LeaseLapsed | Self::Stopping | Self::Broker(_) => false,
        }
    }
}

/// How a job ended, which decides what the consumer does with its message.
#[derive(Debug)]
pub enum Outcome {
    /// The provider accepted the message. Ack.
    Sent,
    /// The provider refused for good. Without an SMS to carry its code, the code is
    /// deleted and the job dead-lettered, then acked; with one (`by_sms`), acked.
    Failed { reason: String, by_sms: bool },
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

/// Hands a send over to its provider.
pub trait Courier: Send + Sync + 'static {
    /// Whose answers these are: reasons name it.
    const PROVIDER: Provider;

    /// Hands `parcel` over once: what came of it.
    fn carry(&self, parcel: Parcel<'_>) -> impl Future<Output = CallResult> + Send;
}

/// One attempt at a send.
pub struct Parcel<'a> {
    pub job: &'a SendJob,
    pub code: &'a PlainCode,
    /// When the code expires: no call starts later.
    pub deadline: Instant,
    /// The delivery's lease, to be confirmed right before the call.
    pub lease: &'a Lease,
}

/// WhatsApp, through the batcher: the send goes out in its locale's template.
pub struct WhatsApp {
    batcher: Batcher,
    templates: Templates,
}

impl Courier for WhatsApp {
    const PROVIDER: Provider = Provider::Wati;

    async fn carry(&self, parcel: Parcel<'_>) -> CallResult {
        let outgoing = Outgoing {
            template: self.templates.pick(&parcel.job.locales).clone(),
            request_id: parcel.job.request_id,
            phone: parcel.job.phone.clone(),
            code: parcel.code.clone(),
            deadline: parcel.deadline,
            lease: parcel.lease.clone(),
        };
        self.batcher.send(outgoing).await
    }
}

/// What a WhatsApp send does when WhatsApp cannot deliver it.
#[derive(Clone)]
pub struct Fallback {
    pub sms: SmsFallback,
    /// Sets the timers that wait `FALLBACK_AFTER_SECONDS` for a delivered receipt, if
    /// there is a wait.
    pub timers: Option<Timers>,
}

/// Everything delivering a send needs.
pub struct Deliverer<C: Courier = WhatsApp> {
    ledger: Ledger,
    courier: C,
    sealer: Arc<CodeSealer>,
    retry: RetryConfig,
    /// SMS for WhatsApp sends that fail, where SMS is on.
    fallback: Option<Fallback>,
    /// Tells the app what became of each send, where events are on.
    events: Option<Emitter>,
    /// Becomes `true` when the worker is stopping: waits between attempts end early.
    shutdown: watch::Receiver<bool>,
}

impl Deliverer<WhatsApp> {
    /// Builds the WhatsApp deliverer of one worker and starts its batcher, which stops
    /// with `shutdown`; the batcher's task is returned, to be watched.
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
        let courier = WhatsApp {
            batcher,
            templates: config.wati.templates.clone(),
        };
        let deliverer = Self::new(config, courier, redis, shutdown);
        (deliverer, batcher_task)
    }

    /// Sends the codes WhatsApp cannot deliver by SMS.
    pub fn with_fallback(self, fallback: Fallback) -> Self {
        Self {
            fallback: Some(fallback),
            ..self
        }
    }
}

impl<C: Courier> Deliverer<C> {
    /// A deliverer through `courier`.
    pub fn new(
        config: &WorkerConfig,
        courier: C,
        redis: RedisConn,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ledger: Ledger::new(
                redis,
                Keys::new(&config.common.key_prefix),
                config.common.otp_ttl,
                LEASE_TTL,
            ),
            courier,
            sealer: Arc::new(CodeSealer::new(
                config.common.otp_secret.expose_secret().as_bytes(),
            )),
            retry: config.retry.clone(),
            fallback: None,
            events: None,
            shutdown,
        }
    }

    /// Tells the app what becomes of each send.
    pub fn with_events(self, events: Emitter) -> Self {
        Self {
            events: Some(events),
            ..self
        }
    }

    /// Tells the app that `job`'s send came to `kind`; a fact already told is told with
    /// the same id. An event that cannot be queued hands the job back: its next delivery
    /// finds the send settled, and tells it again.
    async fn tell(
        &self,
        job: &SendJob,
        kind: EventType,
        fill: impl FnOnce(&mut EventData),
    ) -> Result<(), PublishError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let event = Event::about_send(
            kind,
            job.request_id,
            &job.phone,
            job.channel.label(),
            otp_shared::now_ms(),
        )
        .with(fill);
        events.emit(event).await
    }

    pub async fn deliver(&self, job: &SendJob) -> Outcome {
        if job.channel == JobChannel::Whatsapp {
            let age_ms = otp_shared::now_ms().saturating_sub(job.accepted_at_ms);
            metrics::gauge!(otp_shared::metrics::QUEUE_HEAD_AGE).set(age_ms as f64 / 1000.0);
        }
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
        let (sealed, time_left) = match self.start_when_free(job, &lease).await? {
            Start::Delivered => {
                // A copy of a job whose event may not have been queued: tell it again.
                if let Err(e) = self.tell(job, EventType::OtpSent, |_| {}).await {
                    return Ok(Outcome::Requeue(Requeue::Broker(e)));
                }
                return Ok(Outcome::Dropped {
                    why: "already delivered",
                });
            }
            Start::Failed { reason } => {
                let told = self
                    .tell(job, EventType::OtpFailed, |d| {
                        d.reason = Some(reason.clone())
                    })
                    .await;
                if let Err(e) = told {
                    return Ok(Outcome::Requeue(Requeue::Broker(e)));
                }
                return Ok(Outcome::Failed {
                    reason,
                    by_sms: false,
                });
            }
            Start::Busy => return Ok(Outcome::Requeue(Requeue::CopyInProgress)),
            Start::Expired => return self.end(job, &lease, Ending::Expired, 0).await,
            Start::Gone => return self.end(job, &lease, Ending::Gone, 0).await,
            Start::Pending { sealed, time_left } => (sealed, time_left),
        };
        let deadline = Instant::now() + time_left;
        let outcome = lease
            .keep_during(self.send_until_final(job, &lease, &sealed, deadline))
            .await;
        if matches!(outcome, Ok(Outcome::Requeue(_)) | Err(_)) {
            // Let a copy go ahead at once rather than after the lease lapses. (A send
            // that ended, failed or expired, had its lease released by its ending.)
            lease.release().await;
        }
        outcome
    }

    /// Starts the delivery; while another worker holds the lease on a copy of the job
    /// (a worker killed mid-delivery holds it until it lapses), waits here for it to
    /// lapse or end rather than handing the job back, which would bring it round again
    /// after growing pauses. Busy only when the worker begins to stop.
    async fn start_when_free(&self, job: &SendJob, lease: &Lease) -> redis::RedisResult<Start> {
        loop {
            let start = self.ledger.start(job, lease).await?;
            if !matches!(start, Start::Busy) {
                return Ok(start);
            }
            let wait = self
                .ledger
                .lease_left(job)
                .await?
                .unwrap_or_default()
                .clamp(Duration::from_millis(10), BUSY_PAUSE);
            if !self.pause(wait).await {
                return Ok(Start::Busy);
            }
        }
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
        let mut schedule = RetrySchedule::new(&self.retry);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            let parcel = Parcel {
                job,
                code: &code,
                deadline,
                lease,
            };
            let result = self.courier.carry(parcel).await;
            if matches!(
                result,
                CallResult::Called {
                    verdict: Verdict::Transient { .. },
                    ..
                }
            ) {
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
            Step::RecordSent { from } => {
                self.record_sent(job, lease, from.as_ref()).await;
                self.start_timer(job).await;
                if let Err(e) = self.tell(job, EventType::OtpSent, |_| {}).await {
                    return Ok(Some(Outcome::Requeue(Requeue::Broker(e))));
                }
                Ok(Some(Outcome::Sent))
            }
            Step::Fail { refusal, info } => {
                let reason = refusal.reason(C::PROVIDER);
                // The SMS job goes first: should it not publish, the job comes back and
                // is still a send to make, not a failure on record.
                let by_sms = match self.fall_back(job, refusal).await {
                    Ok(by_sms) => by_sms,
                    Err(FallbackError::Redis(e)) => return Err(e),
                    Err(FallbackError::Publish(e)) => {
                        return Ok(Some(Outcome::Requeue(Requeue::Broker(e))));
                    }
                };
                let ending = Ending::Failed { reason, info };
                let mut outcome = self.end(job, lease, ending, 1).await?;
                if let Outcome::Failed {
                    by_sms: carried, ..
                } = &mut outcome
                {
                    *carried = by_sms;
                }
                Ok(Some(outcome))
            }
            Step::Expire(too_late) => {
                match too_late {
                    TooLate::ForRetry(trouble) => {
                        let reason = trouble.reason(C::PROVIDER);
                        tracing::warn!(%reason, "giving up: the code expires before the next attempt");
                    }
                    TooLate::ForBudget => {
                        tracing::warn!("giving up: no budget before the code expires");
                    }
                }
                self.end(job, lease, Ending::Expired, 0).await.map(Some)
            }
            Step::Retry { delay, trouble } => {
                let reason = trouble.reason(C::PROVIDER);
                tracing::warn!(%reason, delay_ms = delay.as_millis() as u64, "transient failure, will retry");
                if C::PROVIDER == Provider::Wati {
                    metrics::counter!(otp_shared::metrics::RETRIES).increment(1);
                }
                let stopped = !self.pause(delay).await;
                Ok(stopped.then_some(Outcome::Requeue(Requeue::Stopping)))
            }
            Step::Done(outcome) => Ok(Some(outcome)),
        }
    }

    /// Sends the code of a WhatsApp send WATI refused by SMS, where SMS is on and the
    /// refusal is the recipient's; whether an SMS carries it now.
    async fn fall_back(&self, job: &SendJob, refusal: Refusal) -> Result<bool, FallbackError> {
        let Some(fallback) = &self.fallback else {
            return Ok(false);
        };
        if job.channel != JobChannel::Whatsapp || !refusal.is_the_recipients() {
            return Ok(false);
        }
        let fell_back = fallback.sms.fall_back(job, Trigger::Refused).await?;
        Ok(matches!(
            fell_back,
            FellBack::BySms | FellBack::Needless(otp_shared::redis::fallback::Begun::Taken)
        ))
    }

    /// Sets the fallback timer of a WhatsApp send WATI accepted: if no delivered
    /// receipt has come when it runs out, the code goes by SMS. Best effort: without
    /// it, only a failure sends the code by SMS.
    async fn start_timer(&self, job: &SendJob) {
        let Some(Fallback {
            sms,
            timers: Some(timers),
        }) = &self.fallback
        else {
            return;
        };
        if job.channel != JobChannel::Whatsapp || !sms.allows(job) {
            return;
        }
        if let Err(e) = timers.set(job.clone()).await {
            tracing::warn!(error = %e, "could not set the fallback timer; only a failure sends this code by SMS");
        }
    }

    /// Records a delivery the provider accepted. Never hands the job back: a requeued copy
    /// would send the code again, so a Redis failure here is retried, then given up.
    async fn record_sent(&self, job: &SendJob, lease: &Lease, from: Option<&SentFrom>) {
        let since_accepted = otp_shared::now_ms().saturating_sub(job.accepted_at_ms);
        metrics::histogram!(otp_shared::metrics::ACCEPTED_TO_SENT)
            .record(since_accepted as f64 / 1000.0);
        let mut pauses = RECORD_PAUSES_MS.iter();
        loop {
            match self.ledger.mark_sent(job, lease, from).await {
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
            "could not record a delivery the provider accepted; a copy of this job would send again"
        );
    }

    /// Ends a send that will not reach WATI, and tells the app; the outcome that goes
    /// with it.
    async fn end(
        &self,
        job: &SendJob,
        lease: &Lease,
        ending: Ending,
        calls: u32,
    ) -> redis::RedisResult<Outcome> {
        self.ledger.end(job, lease, &ending, calls).await?;
        let told = match &ending {
            Ending::Failed { reason, .. } => {
                self.tell(job, EventType::OtpFailed, |d| {
                    d.reason = Some(reason.clone())
                })
                .await
            }
            Ending::Expired => self.tell(job, EventType::OtpExpired, |_| {}).await,
            Ending::Gone => Ok(()),
        };
        if let Err(e) = told {
            return Ok(Outcome::Requeue(Requeue::Broker(e)));
        }
        Ok(match ending {
            Ending::Failed { reason, .. } => {
                tracing::warn!(%reason, "delivery failed for good");
                Outcome::Failed {
                    reason,
                    by_sms: false,
                }
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
    use super::{GONE_REASON, Outcome, PublishError, Requeue};

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
                by_sms: false,
            },
            Outcome::Failed {
                reason: "Not a valid WhatsApp number".into(),
                by_sms: true,
            },
            Outcome::Expired,
            Outcome::Dropped { why: GONE_REASON },
            Outcome::Requeue(Requeue::Redis(outage())),
            Outcome::Requeue(Requeue::Redis(bug())),
            Outcome::Requeue(Requeue::CopyInProgress),
            Outcome::Requeue(Requeue::LeaseLapsed),
            Outcome::Requeue(Requeue::Stopping),
            Outcome::Requeue(Requeue::Broker(PublishError::Reconnecting)),
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
                    | Requeue::Stopping
                    | Requeue::Broker(_),
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
        assert!(!Requeue::Broker(PublishError::Reconnecting).is_a_failure());
    }
}
