//! Publishes jobs: persistent messages on the durable job queues (a WhatsApp job on the
//! send queue, an SMS job on the SMS queue, an event to the app on the events queue or,
//! for a later attempt, its retry queue), each confirmed by the broker before the caller
//! goes on. The api publishes sends, the worker SMS fallbacks and event retries. Reconnects on the next publish after
//! the connection is lost or stops answering, so the api recovers by itself when
//! RabbitMQ returns; one reconnect runs at a time and other requests fail fast meanwhile,
//! except a publish whose outcome is unknown, which waits for it to publish again.
//! A publish, a second try included, takes at most twice `BROKER_TIMEOUT`.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::amqp::{QueueNames, QueueSettings};
use crate::job::{JobChannel, SendJob};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::time::Instant;

/// Longest wait for a connection, or for the broker to confirm one message.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);
/// AMQP delivery mode that makes a message survive a broker restart.
const PERSISTENT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
    #[error("rabbitmq did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rabbitmq refused the job (nack or unroutable)")]
    Refused,
    #[error("reconnecting to rabbitmq")]
    Reconnecting,
    #[error("{0}")]
    Declare(#[from] crate::amqp::DeclareError),
}

/// A queue a publisher publishes to, declared on each link it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// WhatsApp jobs.
    Send,
    /// SMS jobs.
    Sms,
    /// Events to the app.
    Events,
    /// Events to the app, and their retry queues (the workers').
    EventRetries,
}

/// Clears the reconnecting flag when the reconnect ends, also if it is cancelled.
struct ReconnectGuard<'a>(&'a AtomicBool);

impl Drop for ReconnectGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct Link {
    /// Kept so the connection lives as long as its channel.
    _connection: Connection,
    live: Live,
}

/// The link's channel, and which link it is (so that a publish that failed on an old
/// link does not drop a newer one).
#[derive(Clone)]
struct Live {
    channel: Channel,
    generation: u64,
}

pub struct Publisher {
    amqp_url: String,
    /// The connection's name, as the broker shows it.
    name: &'static str,
    queues: QueueNames,
    queue_settings: QueueSettings,
    targets: Vec<Target>,
    /// Held only to read or swap the link, never across an await.
    link: RwLock<Option<Link>>,
    /// Set while one task reconnects.
    reconnecting: AtomicBool,
    /// Links opened so far.
    generations: AtomicU64,
}

impl Publisher {
    /// Connects at once, so a wrong URL or a missing broker is reported at start.
    pub async fn connect(
        amqp_url: &str,
        name: &'static str,
        queues: QueueNames,
        queue_settings: QueueSettings,
        targets: &[Target],
    ) -> Result<Self, PublishError> {
        let publisher = Self {
            amqp_url: amqp_url.to_owned(),
            name,
            queues,
            queue_settings,
            targets: targets.to_vec(),
            link: RwLock::new(None),
            reconnecting: AtomicBool::new(false),
            generations: AtomicU64::new(0),
        };
        publisher.live().await?;
        Ok(publisher)
    }

    pub fn queues(&self) -> &QueueNames {
        &self.queues
    }

    /// Whether the broker link is up now (for readiness).
    pub async fn is_connected(&self) -> bool {
        self.live().await.is_ok()
    }

    /// The live channel, if the link is up.
    fn current(&self) -> Option<Live> {
        self.link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|l| l.live.channel.status().connected())
            .map(|l| l.live.clone())
    }

    /// Drops link `generation` if it is still the link, so the next publish reconnects.
    fn forget(&self, generation: u64) {
        let mut link = self.link.write().unwrap_or_else(|e| e.into_inner());
        if link
            .as_ref()
            .is_some_and(|l| l.live.generation == generation)
        {
            *link = None;
        }
    }

    async fn live(&self) -> Result<Live, PublishError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return Err(PublishError::Reconnecting);
        }
        let _guard = ReconnectGuard(&self.reconnecting);
        let fresh = tokio::time::timeout(BROKER_TIMEOUT, self.open())
            .await
            .map_err(|_| PublishError::Timeout(BROKER_TIMEOUT))??;
        let live = fresh.live.clone();
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        Ok(live)
    }

    async fn open(&self) -> Result<Link, PublishError> {
        let connection = crate::amqp::connect(&self.amqp_url, self.name).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let (queues, settings) = (&self.queues, self.queue_settings);
        for target in &self.targets {
            match target {
                Target::Send => crate::amqp::declare_send_queue(&channel, queues, settings).await?,
                Target::Sms => crate::amqp::declare_sms_queue(&channel, queues, settings).await?,
                Target::Events => {
                    crate::amqp::declare_events_queue(&channel, queues, settings).await?;
                }
                Target::EventRetries => {
                    crate::amqp::declare_events_retries(&channel, queues, settings).await?;
                }
            }
        }
        tracing::info!(targets = ?self.targets, "connected to rabbitmq");
        Ok(Link {
            _connection: connection,
            live: Live {
                channel,
                generation: self.generations.fetch_add(1, Ordering::Relaxed),
            },
        })
    }

    /// Jobs ready in the send queue (not counting those held by workers).
    pub async fn ready_jobs(&self) -> Result<u64, PublishError> {
        self.ready_in(&self.queues.send).await
    }

    /// Jobs ready in the events queue.
    pub async fn ready_events(&self) -> Result<u64, PublishError> {
        self.ready_in(&self.queues.events).await
    }

    async fn ready_in(&self, name: &str) -> Result<u64, PublishError> {
        let queue = self
            .live()
            .await?
            .channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(u64::from(queue.message_count()))
    }

    /// Publishes one job and waits for the broker's confirm, within twice the broker
    /// timeout. When a publish is cut after it left (the link broke, or the confirm did
    /// not come in time), the job may be on the queue or not: it is published once more
    /// on a fresh link, in the time left, so that the answer is certain. A copy the
    /// broker did keep is left by the worker that meets it (the send is delivered, or
    /// being delivered); at worst a failed send's dead letter is written twice.
    pub async fn publish(&self, job: &SendJob) -> Result<(), PublishError> {
        let queue = match job.channel {
            JobChannel::Whatsapp => &self.queues.send,
            JobChannel::Sms => &self.queues.sms,
        };
        self.publish_message(Message {
            queue,
            payload: job.encode(),
            message_id: job.request_id.to_string(),
            expiration: None,
        })
        .await
    }

    /// Publishes an event to the app, for its first attempt.
    pub async fn publish_event(
        &self,
        envelope: &crate::events::Envelope,
    ) -> Result<(), PublishError> {
        self.publish_message(Message::event(&self.queues.events, envelope, None))
            .await
    }

    /// Publishes an event for a later attempt, after `wait`: its attempt's retry queue
    /// gives it back to the events queue then.
    pub async fn publish_event_retry(
        &self,
        envelope: &crate::events::Envelope,
        wait: Duration,
    ) -> Result<(), PublishError> {
        let queue = self.queues.events_retry(envelope.attempt);
        self.publish_message(Message::event(&queue, envelope, Some(wait)))
            .await
    }

    async fn publish_message(&self, message: Message<'_>) -> Result<(), PublishError> {
        let deadline = Instant::now() + 2 * BROKER_TIMEOUT;
        let live = self.live().await?;
        match self
            .publish_on(&live, &message, BROKER_TIMEOUT.min(left(deadline)))
            .await
        {
            Err(PublishError::Broker(_) | PublishError::Timeout(_))
                if !left(deadline).is_zero() =>
            {
                tracing::warn!(message_id = %message.message_id, "publish outcome unknown; publishing again");
                let live = tokio::time::timeout(left(deadline), self.live_when_reconnected())
                    .await
                    .map_err(|_| PublishError::Timeout(BROKER_TIMEOUT))??;
                self.publish_on(&live, &message, left(deadline)).await
            }
            done => done,
        }
    }

    /// The live channel, waiting while another task reconnects.
    async fn live_when_reconnected(&self) -> Result<Live, PublishError> {
        loop {
            match self.live().await {
                Err(PublishError::Reconnecting) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Publishes on `live` and waits up to `limit` for the confirm.
    async fn publish_on(
        &self,
        live: &Live,
        message: &Message<'_>,
        limit: Duration,
    ) -> Result<(), PublishError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.as_str().into());
        if let Some(wait) = message.expiration {
            // Per-message TTL: the broker dead-letters it back into the events queue.
            properties = properties.with_expiration(wait.as_millis().to_string().into());
        }
        let payload = &message.payload;
        let started = std::time::Instant::now();
        let confirmed = tokio::time::timeout(limit, async {
            live.channel
                .basic_publish(
                    "".into(),
                    message.queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties,
                )
                .await?
                .await
        })
        .await
        .map_err(|_| PublishError::Timeout(limit))
        .and_then(|r| r.map_err(PublishError::Broker));
        let confirm = match confirmed {
            Ok(confirm) => confirm,
            Err(e) => {
                // A link that errs or stops answering is replaced on the next publish.
                self.forget(live.generation);
                return Err(e);
            }
        };
        metrics::histogram!(crate::metrics::PUBLISH_DURATION).record(started.elapsed());
        // A returned message was acked but routed nowhere: as good as lost.
        if confirm.is_ack() && confirm.take_message().is_none() {
            Ok(())
        } else {
            Err(PublishError::Refused)
        }
    }
}

/// One message to publish.
struct Message<'a> {
    queue: &'a str,
    payload: Vec<u8>,
    /// The job's or the event's id, as the broker and the logs show it.
    message_id: String,
    /// How long the broker keeps it before dead-lettering it, if it is an event retry.
    expiration: Option<Duration>,
}

impl<'a> Message<'a> {
    fn event(
        queue: &'a str,
        envelope: &crate::events::Envelope,
        expiration: Option<Duration>,
    ) -> Self {
        Self {
            queue,
            payload: envelope.encode(),
            message_id: envelope.id.clone(),
            expiration,
        }
    }
}

/// The time left until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
