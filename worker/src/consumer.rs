//! The consumer loop of one job queue (WhatsApp sends, SMS sends, or events to the app):
//! receives jobs with a bounded number in flight, hands each to its handler, acks only
//! final outcomes, dead-letters what cannot succeed, drains on
//! shutdown, and reconnects with capped backoff when RabbitMQ goes away. What becomes
//! of each message is decided by a pure function (`disposition`); this module settles
//! the message as it says.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use otp_shared::amqp::DEAD_REASON_HEADER;
use otp_shared::amqp::QueueNames;
use otp_shared::job::{JobError, SendJob};
use tokio::sync::{Semaphore, watch};

use crate::delivery::{Courier, Deliverer, Outcome};

mod disposition;

use disposition::{Disposition, disposition, unreadable};

/// Pause before a job that hit a Redis error goes back to the queue the first time, so
/// an outage does not turn into a tight redelivery loop; it doubles with each earlier
/// return of the job, up to [`MAX_REQUEUE_PAUSE`].
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);
/// Before RabbitMQ 4.3 a nack counts against a quorum queue's delivery limit too: with
/// pauses that double up to this, 20 returns take longer than a code lives, so an outage
/// does not carry the jobs it holds up into the dead-letter queue.
const MAX_REQUEUE_PAUSE: Duration = Duration::from_secs(30);
/// Longest wait for a connection to RabbitMQ, or for its confirm of a dead letter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session on a link ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
    #[error("{0}")]
    Declare(#[from] otp_shared::amqp::DeclareError),
    #[error("the broker closed the consumer")]
    ConsumerClosed,
    #[error("the broker refused the dead letter")]
    DeadLetterRefused,
}

/// A message of a job queue, as its handler reads it.
pub trait Job: Send + Sync + Sized + 'static {
    fn decode(bytes: &[u8]) -> Result<Self, JobError>;
    /// What log lines name it by.
    fn log_id(&self) -> String;
    /// The deliveries counter's `channel` label.
    fn channel(&self) -> &'static str;
}

impl Job for SendJob {
    fn decode(bytes: &[u8]) -> Result<Self, JobError> {
        SendJob::decode(bytes)
    }

    fn log_id(&self) -> String {
        self.request_id.to_string()
    }

    fn channel(&self) -> &'static str {
        self.channel.label()
    }
}

impl Job for otp_shared::events::Envelope {
    fn decode(bytes: &[u8]) -> Result<Self, JobError> {
        otp_shared::events::Envelope::decode(bytes)
    }

    fn log_id(&self) -> String {
        self.id.clone()
    }

    fn channel(&self) -> &'static str {
        "event"
    }
}

/// What handles a queue's jobs.
pub trait Handler: Send + Sync + 'static {
    type Job: Job;

    /// Takes one job to its outcome.
    fn handle(&self, job: &Self::Job) -> impl Future<Output = Outcome> + Send;

    /// Whether its outcomes are deliveries, counted in `otp_deliveries_total`.
    fn delivers(&self) -> bool {
        true
    }
}

impl<C: Courier> Handler for Deliverer<C> {
    type Job = SendJob;

    async fn handle(&self, job: &SendJob) -> Outcome {
        self.deliver(job).await
    }
}

/// The queue a consumer takes its jobs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobQueue {
    /// WhatsApp sends.
    Send,
    /// SMS sends.
    Sms,
    /// Events to post to the app.
    Events,
}

impl JobQueue {
    fn name(self, queues: &QueueNames) -> &str {
        match self {
            JobQueue::Send => &queues.send,
            JobQueue::Sms => &queues.sms,
            JobQueue::Events => &queues.events,
        }
    }

    /// Where its jobs that can never succeed go.
    fn dead(self, queues: &QueueNames) -> &str {
        match self {
            JobQueue::Send | JobQueue::Sms => &queues.dead,
            JobQueue::Events => &queues.events_dead,
        }
    }
}

/// What the consumer needs besides its handler.
pub struct ConsumerSettings {
    pub amqp_url: String,
    /// The queue it consumes.
    pub queue: JobQueue,
    pub queues: QueueNames,
    pub queue_settings: otp_shared::amqp::QueueSettings,
    pub dead_letters: otp_shared::amqp::DeadLetterBounds,
    pub concurrency: u16,
    pub shutdown_grace: Duration,
}

/// A live link to RabbitMQ: the consuming channel and a confirmed channel for dead letters.
pub struct Link {
    connection: Connection,
    jobs: Channel,
    dead_letters: Channel,
}

pub async fn connect(settings: &ConsumerSettings) -> Result<Link, LinkError> {
    let connection = otp_shared::amqp::connect(&settings.amqp_url, "otp-worker").await?;
    let jobs = connection.create_channel().await?;
    // The dead-letter queue first: the job queues dead-letter into it.
    let (queues, queue_settings) = (&settings.queues, settings.queue_settings);
    otp_shared::amqp::declare_dead_letter_queue(&jobs, queues, settings.dead_letters).await?;
    match settings.queue {
        JobQueue::Send => {
            otp_shared::amqp::declare_send_queue(&jobs, queues, queue_settings).await?
        }
        JobQueue::Sms => otp_shared::amqp::declare_sms_queue(&jobs, queues, queue_settings).await?,
        JobQueue::Events => {
            otp_shared::amqp::declare_events_queues(
                &jobs,
                queues,
                queue_settings,
                settings.dead_letters,
            )
            .await?;
        }
    }
    jobs.basic_qos(settings.concurrency, BasicQosOptions::default())
        .await?;
    let dead_letters = connection.create_channel().await?;
    dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Link {
        connection,
        jobs,
        dead_letters,
    })
}

/// Consumes until `shutdown` turns true, reconnecting whenever the link drops.
pub async fn run<H: Handler>(
    settings: Arc<ConsumerSettings>,
    handler: Arc<H>,
    first_link: Link,
    mut shutdown: watch::Receiver<bool>,
) {
    let reconnect_delays = || {
        ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = reconnect_delays();
    let mut link = Some(first_link);
    // One bound for the worker's whole life: jobs still running from a broken link
    // count against the next session too, and shutdown waits for all of them.
    let in_flight = Arc::new(Semaphore::new(usize::from(settings.concurrency)));
    loop {
        if let Some(live) = link.take() {
            delays = reconnect_delays();
            match consume(&settings, &handler, live, &in_flight, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "lost the link to rabbitmq; reconnecting"),
            }
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(10));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect(&settings));
        let connected = tokio::select! {
            connected = attempt => connected,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        match connected {
            Ok(Ok(fresh)) => {
                tracing::info!("reconnected to rabbitmq");
                link = Some(fresh);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "rabbitmq still unreachable"),
            Err(_) => tracing::warn!("rabbitmq did not answer in time"),
        }
    }
}

/// One session on one link. `Ok` when stopped by shutdown, `Err` when the link broke.
async fn consume<H: Handler>(
    settings: &ConsumerSettings,
    handler: &Arc<H>,
    link: Link,
    in_flight: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut consumer = link
        .jobs
        .basic_consume(
            settings.queue.name(&settings.queues).into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = settings.queue.name(&settings.queues), "consuming");
    let broken = loop {
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break None,
            },
            _ = shutdown.wait_for(|stopping| *stopping) => break None,
        };
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            _ = shutdown.wait_for(|stopping| *stopping) => break None,
        };
        match delivery {
            Some(Ok(delivery)) => {
                metrics::gauge!(otp_shared::metrics::JOBS_IN_FLIGHT).increment(1.0);
                let handler = handler.clone();
                let dead_letters = link.dead_letters.clone();
                let dead_queue = settings.queue.dead(&settings.queues).to_owned();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    handle(delivery, &*handler, &dead_letters, &dead_queue, &shutdown).await;
                    metrics::gauge!(otp_shared::metrics::JOBS_IN_FLIGHT).decrement(1.0);
                    drop(permit);
                });
            }
            Some(Err(e)) => break Some(LinkError::Broker(e)),
            None => break Some(LinkError::ConsumerClosed),
        }
    };
    if let Some(e) = broken {
        return Err(e);
    }
    // Stop receiving, let the jobs in flight finish, then leave: whatever is still
    // unacked goes back to the queue when the connection closes.
    let _ = link
        .jobs
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    let all = u32::from(settings.concurrency);
    match tokio::time::timeout(settings.shutdown_grace, in_flight.acquire_many(all)).await {
        Ok(_) => tracing::info!("in-flight jobs finished"),
        Err(_) => tracing::warn!("shutdown grace period over; unfinished jobs return to the queue"),
    }
    let _ = link.connection.close(200, "worker stopping".into()).await;
    Ok(())
}

/// Hands one message's job to the handler, then settles the message as its
/// disposition says.
async fn handle<H: Handler>(
    delivery: Delivery,
    handler: &H,
    dead_letters: &Channel,
    dead_queue: &str,
    shutdown: &watch::Receiver<bool>,
) {
    let disposition = match H::Job::decode(&delivery.data) {
        Err(e) => {
            tracing::warn!(reason = e.reason(), "unreadable message");
            unreadable(&e)
        }
        Ok(job) => {
            let outcome = handler.handle(&job).await;
            let disposition = disposition(&outcome);
            account(&job, &outcome, &disposition, handler.delivers());
            disposition
        }
    };
    let settled = match disposition {
        Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
        Disposition::DeadLetter { reason, kind } => {
            match dead_letter(dead_letters, dead_queue, &delivery, &reason).await {
                Ok(()) => {
                    metrics::counter!(otp_shared::metrics::DEAD_LETTERS, "kind" => kind)
                        .increment(1);
                    delivery.ack(BasicAckOptions::default()).await
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not dead-letter; the message returns to the queue");
                    requeue(&delivery, shutdown).await
                }
            }
        }
        Disposition::Requeue => requeue(&delivery, shutdown).await,
        Disposition::Reject => {
            pause_unless_stopping(&delivery, shutdown).await;
            delivery.reject(BasicRejectOptions { requeue: true }).await
        }
    };
    if let Err(e) = settled {
        // The link broke: the broker gives the message to another consumer.
        tracing::warn!(error = %e, "could not settle a message");
    }
}

/// Counts a delivery that is over under its label and channel, and logs a job dropped
/// or handed back (at error level when it counts toward the dead-letter queue).
fn account(job: &impl Job, outcome: &Outcome, disposition: &Disposition, delivers: bool) {
    if let Some(label) = outcome.label()
        && delivers
    {
        metrics::counter!(
            otp_shared::metrics::DELIVERIES,
            "outcome" => label,
            "channel" => job.channel()
        )
        .increment(1);
    }
    match outcome {
        Outcome::Dropped { why } => {
            tracing::info!(job = %job.log_id(), why, "job dropped");
        }
        Outcome::Requeue(why) => {
            let why: &(dyn std::error::Error + 'static) = why;
            if *disposition == Disposition::Reject {
                tracing::error!(job = %job.log_id(), why, "job failed; it returns to the queue, counted");
            } else {
                tracing::warn!(job = %job.log_id(), why, "job returns to the queue");
            }
        }
        Outcome::Sent | Outcome::Failed { .. } | Outcome::Expired => {}
    }
}

/// Waits before a job goes back (longer the more often it came back already), unless
/// the worker is stopping.
async fn pause_unless_stopping(delivery: &Delivery, shutdown: &watch::Receiver<bool>) {
    if !*shutdown.borrow() {
        tokio::time::sleep(requeue_pause(earlier_returns(delivery))).await;
    }
}

/// How often the job came back before: a quorum queue's `x-delivery-count` (none on a
/// classic queue, whose redelivered flag says only "at least once").
fn earlier_returns(delivery: &Delivery) -> u32 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count").cloned());
    match count {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::ShortUInt(n)) => u32::from(n),
        _ => u32::from(delivery.redelivered),
    }
}

fn requeue_pause(earlier_returns: u32) -> Duration {
    REQUEUE_PAUSE
        .saturating_mul(2u32.saturating_pow(earlier_returns.min(16)))
        .min(MAX_REQUEUE_PAUSE)
}

async fn requeue(delivery: &Delivery, shutdown: &watch::Receiver<bool>) -> lapin::Result<bool> {
    pause_unless_stopping(delivery, shutdown).await;
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
}

/// Publishes the original message body to the dead-letter queue with the reason in a
/// header, and waits for the broker's confirm.
async fn dead_letter(
    channel: &Channel,
    dead_queue: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), LinkError> {
    let mut headers = FieldTable::default();
    headers.insert(
        DEAD_REASON_HEADER.into(),
        AMQPValue::LongString(reason.into()),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let confirm = tokio::time::timeout(CONNECT_TIMEOUT, async {
        channel
            .basic_publish(
                "".into(),
                dead_queue.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await
    })
    .await
    .map_err(|_| LinkError::DeadLetterRefused)??;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(LinkError::DeadLetterRefused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_before_a_return_doubles_and_twenty_returns_outlast_a_code() {
        assert_eq!(requeue_pause(0), Duration::from_secs(1));
        assert_eq!(requeue_pause(1), Duration::from_secs(2));
        assert_eq!(requeue_pause(4), Duration::from_secs(16));
        assert_eq!(requeue_pause(5), MAX_REQUEUE_PAUSE);
        assert_eq!(requeue_pause(u32::MAX), MAX_REQUEUE_PAUSE);
        // The default delivery limit (20) against the default code life (300 s).
        let twenty: Duration = (0..20).map(requeue_pause).sum();
        assert!(twenty > Duration::from_secs(300), "{twenty:?}");
    }
}
