//! The broker side: connecting, the queues and exchanges (declared idempotently by every
//! worker at start and after every reconnect), and publishing with confirms.
//!
//! ```text
//!  dispatcher ──▶ exchange `jobs` (direct) ──rk emails──▶ quorum queue `emails` ──▶ consumers
//!                        ▲                                   │ x-delivery-limit exceeded
//!                        │ dead-letter after x-message-ttl   ▼ (the job crashed the worker)
//!   `emails.retry.<ms>ms` (one per delay) ◀── failed job    exchange `jobs.dlx` ──▶ `emails.dlq`
//!                                             (worker)        ▲ attempts used up / poison
//!                                                             └── (worker, with x-last-error)
//! ```
//! The same for `payments`.
//!
//! Every queue is a quorum queue, replicated on min(3, nodes) nodes (RabbitMQ's default
//! initial group size; the rendered configuration keeps it there as nodes come and go), so
//! a job waiting for its retry or sitting in a dead-letter queue survives the loss of a node
//! as the jobs in the work queues do. Moving messages between them (retry queue to work
//! queue when the delay ends, work queue to dead-letter queue at the delivery limit) is the
//! broker's dead-lettering, made at-least-once: the source queue keeps a message until the
//! target confirmed it (this needs the `reject-publish` overflow).

use std::time::Duration;

use anyhow::Context;
use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use secrecy::{ExposeSecret, SecretString};

use super::{config::JobsConfig, Queue};

/// Where new jobs are published (routing key: the queue name).
pub const WORK_EXCHANGE: &str = "jobs";
/// Where jobs go that will not be retried (routing key: the queue name).
pub const DEAD_EXCHANGE: &str = "jobs.dlx";

/// Headers the worker sets on retried and dead-lettered jobs.
pub const ATTEMPTS_HEADER: &str = "x-attempts";
pub const LAST_ERROR_HEADER: &str = "x-last-error";
/// Milliseconds since the Unix epoch of the first failure.
pub const FIRST_FAILED_HEADER: &str = "x-first-failed-at";

pub fn dlq(queue: Queue) -> String {
    format!("{queue}.dlq")
}

/// The delay queue of one retry delay; named after its delay so that changing the delays
/// declares new queues instead of clashing with the arguments of the old ones.
pub fn retry_queue(queue: Queue, delay_ms: u64) -> String {
    format!("{queue}.retry.{delay_ms}ms")
}

/// How to reach the broker, and the topology settings every connection declares.
#[derive(Clone)]
pub struct Broker {
    url: SecretString,
    retry_delays_ms: Vec<u64>,
    delivery_limit: u32,
}

impl Broker {
    pub fn new(url: SecretString, config: &JobsConfig) -> Self {
        Self {
            url,
            retry_delays_ms: config.retry_delays_ms.clone(),
            delivery_limit: config.delivery_limit,
        }
    }

    /// A connection (named after its role in the broker's connection list) with the
    /// topology declared, within `timeout`.
    pub async fn connect(&self, role: &str, timeout: Duration) -> anyhow::Result<Connection> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("shop worker: {role}").into());
        let connection = tokio::time::timeout(
            timeout,
            Connection::connect(self.url.expose_secret(), properties),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the broker within {timeout:?}"))?
        .context("connecting to the broker (jobs.amqp_url)")?;
        let channel = connection.create_channel().await?;
        declare(&channel, &self.retry_delays_ms, self.delivery_limit).await?;
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(connection)
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn quorum() -> (&'static str, AMQPValue) {
    ("x-queue-type", text("quorum"))
}
/// Dead-lettered messages stay in their source queue until the target queue confirmed
/// them (RabbitMQ's default for quorum queues is at-most-once: lost if the target cannot
/// take them at that moment).
fn at_least_once() -> (&'static str, AMQPValue) {
    ("x-dead-letter-strategy", text("at-least-once"))
}
/// What at-least-once dead-lettering requires; a full queue (max-length, set by the
/// deployment's policy) refuses publishes, and the publisher's confirm says so.
fn reject_publish() -> (&'static str, AMQPValue) {
    ("x-overflow", text("reject-publish"))
}

/// What a failed declaration means most often: the queue exists with other arguments
/// (a broker used by an older version of the worker, whose retry and dead-letter queues
/// were classic queues); docs/jobs.md, "Upgrading a broker".
fn declare_failed(queue: &str) -> String {
    format!(
        "declaring queue {queue} (if the broker says PRECONDITION_FAILED, the queue exists \
         with other arguments: see docs/jobs.md, \"Upgrading a broker\")"
    )
}

/// Declares every exchange and queue; declaring what exists with the same arguments is a
/// no-op, so every worker does it on every connection.
pub async fn declare(
    channel: &Channel,
    retry_delays_ms: &[u64],
    delivery_limit: u32,
) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for exchange in [WORK_EXCHANGE, DEAD_EXCHANGE] {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("declaring exchange {exchange}"))?;
    }
    for queue in Queue::ALL {
        let name = queue.name();
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                table(&[
                    quorum(),
                    (
                        "x-delivery-limit",
                        AMQPValue::LongLongInt(delivery_limit.into()),
                    ),
                    ("x-dead-letter-exchange", text(DEAD_EXCHANGE)),
                    ("x-dead-letter-routing-key", text(name)),
                    at_least_once(),
                    reject_publish(),
                ]),
            )
            .await
            .with_context(|| declare_failed(name))?;
        bind(channel, name, WORK_EXCHANGE, name).await?;
        // No delivery limit and no dead-letter exchange: nothing leaves it but by `shopctl
        // jobs dlq replay` (or a purge). RabbitMQ 3.13 applies no limit to a queue declared
        // without one; 4.x applies 20 deliveries, which `shopctl jobs dlq` never spends: it
        // reads a message by copying it to the back of the queue and acknowledging the one
        // it took (cli/src/jobs.rs), so no message is ever handed back. (`-1`, 4.x's "no
        // limit", would drop every returned message on 3.13: docs/jobs.md.)
        let dlq = dlq(queue);
        channel
            .queue_declare(
                dlq.as_str().into(),
                QueueDeclareOptions::durable(),
                table(&[quorum(), reject_publish()]),
            )
            .await
            .with_context(|| declare_failed(&dlq))?;
        bind(channel, &dlq, DEAD_EXCHANGE, name).await?;
        for delay in retry_delays_ms {
            let retry = retry_queue(queue, *delay);
            channel
                .queue_declare(
                    retry.as_str().into(),
                    QueueDeclareOptions::durable(),
                    table(&[
                        quorum(),
                        ("x-message-ttl", AMQPValue::LongLongInt(*delay as i64)),
                        ("x-dead-letter-exchange", text(WORK_EXCHANGE)),
                        ("x-dead-letter-routing-key", text(name)),
                        at_least_once(),
                        reject_publish(),
                    ]),
                )
                .await
                .with_context(|| declare_failed(&retry))?;
        }
    }
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding {queue} to {exchange}"))
}

/// A channel in confirm mode.
pub async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes a persistent message and waits for the broker's confirm: Ok means the broker
/// has taken responsibility for it (written to its queue). A nack or an unroutable message
/// is an error.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> anyhow::Result<()> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties.with_delivery_mode(2),
        )
        .await?
        .await?;
    if !confirm.is_ack() {
        anyhow::bail!("the broker refused the message (nack) for {exchange}/{routing_key}");
    }
    if confirm.take_message().is_some() {
        anyhow::bail!("no queue takes messages for {exchange}/{routing_key} (unroutable)");
    }
    Ok(())
}
