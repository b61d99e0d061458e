//! RabbitMQ connection and topology, reached through any node of a cluster: the durable
//! job queues (quorum by default, with a delivery limit and at-least-once
//! dead-lettering): WhatsApp sends, and SMS sends in a queue of their own so that they
//! never wait behind a WhatsApp backlog; their bounded dead-letter queue; and the events
//! to the app with their retry queues.

use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

/// Header that carries why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-otp-dead-reason";

/// `AMQP_QUEUE_TYPE`: how the queues are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Replicated over the cluster's nodes (Raft); survives the loss of a minority of
    /// them; counts deliveries and dead-letters a job past `AMQP_DELIVERY_LIMIT`.
    Quorum,
    /// On one node; no delivery limit. For brokers whose queues are already classic.
    Classic,
}

/// How the queues are declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub queue_type: QueueType,
    /// Quorum queues: failed deliveries of one job (a worker that died holding it, or
    /// rejected it) before the broker dead-letters it.
    pub delivery_limit: u32,
}

/// Why a queue could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// The queue exists with other arguments: the broker keeps a queue's arguments for
    /// its life, so the settings must match it, or the queue must be migrated.
    #[error(
        "queue {queue} exists with another {setting} ({detail}); set {setting} to match it, or migrate the queue (README: Running clustered)"
    )]
    Mismatch {
        queue: String,
        setting: &'static str,
        detail: String,
    },
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
}

/// The node the next connection tries first, so that reconnects move around a cluster.
/// Starts at a random node, so that replicas spread over the cluster.
static NEXT_NODE: std::sync::LazyLock<AtomicUsize> =
    std::sync::LazyLock::new(|| AtomicUsize::new(uuid::Uuid::new_v4().as_bytes()[0].into()));
/// Longest wait for one node, so that a node that does not answer leaves time for the
/// others.
const NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects to RabbitMQ, naming the connection after the process for the management UI.
/// `urls` names one node or several of one cluster (comma-separated); they are tried
/// in turn, each call starting one node further on, and the last error is returned.
pub async fn connect(urls: &str, process: &str) -> lapin::Result<Connection> {
    let nodes: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let first = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
    let mut last_error = None;
    for i in 0..nodes.len() {
        let node = nodes[(first + i) % nodes.len()];
        let props = ConnectionProperties::default().with_connection_name(process.into());
        let node = with_heartbeat(node);
        match tokio::time::timeout(NODE_TIMEOUT, Connection::connect(&node, props)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => {
                last_error = Some(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 2 s",
                )));
            }
        }
    }
    // An empty list is refused by the settings; an error names something anyway.
    Err(last_error.unwrap_or_else(|| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "AMQP_URL names no node",
        ))
    }))
}

/// The heartbeat asked for, unless a URL names its own: RabbitMQ closes a connection
/// after two heartbeats without a word, and gives its unacked jobs to other workers. At
/// RabbitMQ's default (60 s) a stalled worker (stopped, swapping, a frozen VM) would sit
/// on its whole prefetch for minutes, past the codes' life.
pub const HEARTBEAT_SECONDS: u16 = 5;

/// `node` with `heartbeat=` [`HEARTBEAT_SECONDS`] in its query, unless it has one.
fn with_heartbeat(node: &str) -> String {
    if node.contains("heartbeat=") {
        return node.to_owned();
    }
    let joint = if node.contains('?') { '&' } else { '?' };
    format!("{node}{joint}heartbeat={HEARTBEAT_SECONDS}")
}

/// How much the dead-letter queue keeps: it holds phone numbers, so not forever.
/// (RabbitMQ reads both as signed integers: an unsigned field type is refused.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterBounds {
    /// Most messages kept; past it, the oldest are dropped.
    pub max_length: u32,
    /// How long a dead letter is kept.
    pub ttl: std::time::Duration,
}

/// Declares the send queue, durable, so jobs survive a broker restart. A quorum queue
/// dead-letters, at least once, a job past the delivery limit to the dead-letter queue.
pub async fn declare_send_queue(
    channel: &Channel,
    queues: &QueueNames,
    settings: QueueSettings,
) -> Result<(), DeclareError> {
    declare_job_queue(channel, &queues.send, queues, settings).await
}

/// Declares the SMS queue, like the send queue.
pub async fn declare_sms_queue(
    channel: &Channel,
    queues: &QueueNames,
    settings: QueueSettings,
) -> Result<(), DeclareError> {
    declare_job_queue(channel, &queues.sms, queues, settings).await
}

/// A queue of jobs: durable; quorum, a job past the delivery limit is dead-lettered, at
/// least once, to the dead-letter queue.
async fn declare_job_queue(
    channel: &Channel,
    name: &str,
    queues: &QueueNames,
    settings: QueueSettings,
) -> Result<(), DeclareError> {
    let mut arguments = FieldTable::default();
    if settings.queue_type == QueueType::Quorum {
        quorum(&mut arguments);
        let limit = i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX);
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
        dead_letters_to(&mut arguments, &queues.dead);
        at_least_once(&mut arguments);
    }
    declare(channel, name, arguments).await
}

fn dead_letters_to(arguments: &mut FieldTable, queue: &str) {
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
}

/// A quorum queue's dead-lettering, at least once.
fn at_least_once(arguments: &mut FieldTable) {
    arguments.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    // At-least-once dead-lettering needs it (without it RabbitMQ silently falls back to
    // at-most-once); the queues have no length limit, so they never reject.
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
}

/// Declares the dead-letter queue, durable, bounded and classic. Only the worker, which
/// is the only one to write to it, declares it.
pub async fn declare_dead_letter_queue(
    channel: &Channel,
    queues: &QueueNames,
    bounds: DeadLetterBounds,
) -> Result<(), DeclareError> {
    // Classic whatever AMQP_QUEUE_TYPE says: a quorum queue did not keep the newest
    // dead letters reliably past x-max-length in our tests on RabbitMQ 3.10 (under load
    // the oldest stayed), and a classic one does. On a cluster it lives on one node.
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongUInt(bounds.max_length),
    );
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(bounds.ttl.as_millis()).unwrap_or(i64::MAX)),
    );
    declare(channel, &queues.dead, arguments).await
}

/// Declares the queue of events to post: a job queue, dead-lettering into its own
/// dead-letter queue. Enough for whoever only publishes events (the api).
pub async fn declare_events_queue(
    channel: &Channel,
    queues: &QueueNames,
    settings: QueueSettings,
) -> Result<(), DeclareError> {
    let mut events = FieldTable::default();
    if settings.queue_type == QueueType::Quorum {
        quorum(&mut events);
        let limit = i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX);
        events.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
        dead_letters_to(&mut events, &queues.events_dead);
        at_least_once(&mut events);
    }
    declare(channel, &queues.events, events).await
}

/// Declares every events queue the workers use: the dead-letter queue (classic and
/// bounded, as the send queue's; only the workers declare it), the queue of events to
/// post, and one retry queue per later attempt, which nobody consumes: what expires
/// there goes back to the events queue.
pub async fn declare_events_queues(
    channel: &Channel,
    queues: &QueueNames,
    settings: QueueSettings,
    dead_letters: DeadLetterBounds,
) -> Result<(), DeclareError> {
    let mut dead = FieldTable::default();
    dead.insert(
        "x-max-length".into(),
        AMQPValue::LongUInt(dead_letters.max_length),
    );
    dead.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(dead_letters.ttl.as_millis()).unwrap_or(i64::MAX)),
    );
    declare(channel, &queues.events_dead, dead).await?;
    declare_events_retries(channel, queues, settings).await
}

/// Declares the queue of events to post and its retry queues (not the dead-letter
/// queue, which holds the bounds only the workers' settings know).
pub async fn declare_events_retries(
    channel: &Channel,
    queues: &QueueNames,
    settings: QueueSettings,
) -> Result<(), DeclareError> {
    declare_events_queue(channel, queues, settings).await?;
    let retries = crate::events::MAX_RETRIES as u32;
    for attempt in 2..=retries + 1 {
        let mut retry = FieldTable::default();
        if settings.queue_type == QueueType::Quorum {
            quorum(&mut retry);
            at_least_once(&mut retry);
        }
        dead_letters_to(&mut retry, &queues.events);
        declare(channel, &queues.events_retry(attempt), retry).await?;
    }
    Ok(())
}

fn quorum(arguments: &mut FieldTable) {
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
}

async fn declare(channel: &Channel, name: &str, arguments: FieldTable) -> Result<(), DeclareError> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map(drop)
        .map_err(|e| mismatch(name, e))
}

/// A declare refused with 406 PRECONDITION_FAILED ("inequivalent arg 'x-queue-type' for
/// queue …: received 'quorum' but current is 'classic'") becomes a [`DeclareError::Mismatch`]
/// naming the setting behind that argument.
fn mismatch(queue: &str, error: lapin::Error) -> DeclareError {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return DeclareError::Broker(error);
    };
    if amqp.get_id() != 406 {
        return DeclareError::Broker(error);
    }
    let detail = amqp.get_message().to_string();
    let Some(argument) = detail
        .split("inequivalent arg '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    else {
        return DeclareError::Broker(error);
    };
    let setting = match argument {
        "x-delivery-limit" => "AMQP_DELIVERY_LIMIT",
        "x-max-length" => "DEAD_LETTER_MAX_LENGTH",
        "x-message-ttl" => "DEAD_LETTER_TTL_SECONDS",
        // Only a quorum queue carries these (or a queue someone declared by hand).
        "x-queue-type"
        | "x-dead-letter-exchange"
        | "x-dead-letter-routing-key"
        | "x-dead-letter-strategy"
        | "x-overflow" => "AMQP_QUEUE_TYPE",
        // Not one of ours: name the broker's argument itself.
        _ => "queue argument",
    };
    DeclareError::Mismatch {
        queue: queue.to_owned(),
        setting,
        detail,
    }
}

/// RabbitMQ queue names.
#[derive(Clone, Debug)]
pub struct QueueNames {
    /// WhatsApp send jobs.
    pub send: String,
    /// SMS send jobs.
    pub sms: String,
    /// Jobs that failed permanently or could not be read.
    pub dead: String,
    /// Events to the app, to post.
    pub events: String,
    /// Events that every attempt failed to post (kept a while, for someone to look at).
    pub events_dead: String,
}

impl QueueNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            send: format!("{prefix}.send"),
            sms: format!("{prefix}.sms"),
            dead: format!("{prefix}.send.dead"),
            events: format!("{prefix}.events"),
            events_dead: format!("{prefix}.events.dead"),
        }
    }

    /// Where an event waits before its attempt number `attempt` (2 and up): a queue
    /// per attempt, whose messages all wait that attempt's time, so the one at its head
    /// is always the next to expire.
    pub fn events_retry(&self, attempt: u32) -> String {
        format!("{}.retry.{attempt}", self.events)
    }

    /// Every queue, for whoever removes them (tests).
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![
            self.send.clone(),
            self.sms.clone(),
            self.dead.clone(),
            self.events.clone(),
            self.events_dead.clone(),
        ];
        let retries = crate::events::MAX_RETRIES as u32;
        all.extend((2..=retries + 1).map(|attempt| self.events_retry(attempt)));
        all
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_connection_asks_for_a_short_heartbeat_unless_its_url_says() {
        use super::with_heartbeat;
        assert_eq!(
            with_heartbeat("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://a:5672/%2f?frame_max=8192"),
            "amqp://a:5672/%2f?frame_max=8192&heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://a/%2f?heartbeat=30"),
            "amqp://a/%2f?heartbeat=30"
        );
    }
}
