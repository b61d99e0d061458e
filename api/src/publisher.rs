//! Publishes send jobs: persistent messages on the durable send queue, each confirmed
//! by the broker before the request is answered. Reconnects on the next publish after
//! the connection is lost or stops answering, so the api recovers by itself when
//! RabbitMQ returns; one reconnect runs at a time and other requests fail fast meanwhile,
//! except a publish whose outcome is unknown, which waits for it to publish again.
//! A publish, a second try included, takes at most twice `BROKER_TIMEOUT`.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use otp_shared::amqp::{QueueNames, QueueSettings};
use otp_shared::job::SendJob;
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
    Declare(#[from] otp_shared::amqp::DeclareError),
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
    queues: QueueNames,
    queue_settings: QueueSettings,
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
        queues: QueueNames,
        queue_settings: QueueSettings,
    ) -> Result<Self, PublishError> {
        let publisher = Self {
            amqp_url: amqp_url.to_owned(),
            queues,
            queue_settings,
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
        let connection = otp_shared::amqp::connect(&self.amqp_url, "otp-api").await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        otp_shared::amqp::declare_send_queue(&channel, &self.queues, self.queue_settings).await?;
        tracing::info!(queue = %self.queues.send, "connected to rabbitmq");
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
        let queue = self
            .live()
            .await?
            .channel
            .queue_declare(
                self.queues.send.as_str().into(),
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
        let deadline = Instant::now() + 2 * BROKER_TIMEOUT;
        let live = self.live().await?;
        match self
            .publish_on(&live, job, BROKER_TIMEOUT.min(left(deadline)))
            .await
        {
            Err(PublishError::Broker(_) | PublishError::Timeout(_))
                if !left(deadline).is_zero() =>
            {
                tracing::warn!(request_id = %job.request_id, "publish outcome unknown; publishing the job again");
                let live = tokio::time::timeout(left(deadline), self.live_when_reconnected())
                    .await
                    .map_err(|_| PublishError::Timeout(BROKER_TIMEOUT))??;
                self.publish_on(&live, job, left(deadline)).await
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
        job: &SendJob,
        limit: Duration,
    ) -> Result<(), PublishError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(job.request_id.to_string().into());
        let payload = job.encode();
        let started = std::time::Instant::now();
        let confirmed = tokio::time::timeout(limit, async {
            live.channel
                .basic_publish(
                    "".into(),
                    self.queues.send.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &payload,
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
        metrics::histogram!(otp_shared::metrics::PUBLISH_DURATION).record(started.elapsed());
        // A returned message was acked but routed nowhere: as good as lost.
        if confirm.is_ack() && confirm.take_message().is_none() {
            Ok(())
        } else {
            Err(PublishError::Refused)
        }
    }
}

/// The time left until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
