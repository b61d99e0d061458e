//! RabbitMQ connection and topology: the durable send queue and its dead-letter queue.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

use crate::keys::QueueNames;

/// Header that carries why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-otp-dead-reason";

/// Connects to RabbitMQ, naming the connection after the process for the management UI.
pub async fn connect(url: &str, process: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(process.into());
    Connection::connect(url, props).await
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

/// Declares the send queue, durable, so jobs survive a broker restart.
pub async fn declare_send_queue(channel: &Channel, queues: &QueueNames) -> lapin::Result<()> {
    declare(channel, &queues.send, FieldTable::default()).await
}

/// Declares the dead-letter queue, durable and bounded. Only the worker, which is the
/// only one to write to it, declares it.
pub async fn declare_dead_letter_queue(
    channel: &Channel,
    queues: &QueueNames,
    bounds: DeadLetterBounds,
) -> lapin::Result<()> {
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

async fn declare(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
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
}
