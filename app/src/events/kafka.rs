//! Kafka clients (librdkafka through `rdkafka`) configured for the guarantees we state.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::StreamConsumer,
    error::KafkaError,
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};

use super::EventsConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("events.brokers is not set (APP_EVENTS__BROKERS): the worker needs Kafka")]
    NoBrokers,
    #[error("Kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

fn base(config: &EventsConfig) -> Result<ClientConfig, KafkaSetupError> {
    let brokers = config
        .brokers
        .as_deref()
        .ok_or(KafkaSetupError::NoBrokers)?;
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        // Reconnect quickly after a broker restart.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000");
    Ok(client)
}

/// An idempotent producer: acks from all in-sync replicas, retries without duplicates or
/// reordering within a partition.
pub fn producer(config: &EventsConfig) -> Result<FutureProducer, KafkaSetupError> {
    Ok(base(config)?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("message.timeout.ms", config.publish_timeout_ms.to_string())
        .create()?)
}

/// A consumer in group `group` that stores an offset only when the caller says the message
/// is done (`store_offset_from_message`), and commits stored offsets in the background.
pub fn consumer(config: &EventsConfig, group: &str) -> Result<StreamConsumer, KafkaSetupError> {
    Ok(base(config)?
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A worker that dies loses its partitions to the others within this time.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("fetch.wait.max.ms", "50")
        .create()?)
}

/// Creates the topic when it does not exist; an existing topic is left as it is.
pub async fn ensure_topic(config: &EventsConfig) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base(config)?.create()?;
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::Topic { topic, code }),
        }
    }
    Ok(())
}
