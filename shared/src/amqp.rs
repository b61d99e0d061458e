//! RabbitMQ connection and topology: the durable send queue and its dead-letter queue.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::keys::QueueNames;

/// Header that carries why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-otp-dead-reason";

/// Connects to RabbitMQ, naming the connection after the process for the management UI.
pub async fn connect(url: &str, process: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(process.into());
    Connection::connect(url, props).await
}

/// Declares both queues, durable, so jobs survive a broker restart.
pub async fn declare_queues(channel: &Channel, queues: &QueueNames) -> lapin::Result<()> {
    for name in [&queues.send, &queues.dead] {
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
