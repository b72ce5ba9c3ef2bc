//! Where the order events go: the Kafka brokers, topic and consumer settings.

use serde::{Deserialize, Serialize};

/// The `events` section. Without `brokers` the API still records events in the outbox (they
/// are part of each order change), and `app worker` refuses to start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    pub topic: String,
    /// Partitions of the topic when the relay creates it (an existing topic keeps its own).
    pub partitions: i32,
    pub replication_factor: i32,
    /// Consumer group names are `<group_prefix><consumer>`, e.g. `shop-inventory`.
    pub group_prefix: String,
    /// Consumers of each group per worker process (each takes a share of the partitions).
    pub consumer_instances: u32,
    /// Events the relay reads from the outbox and publishes per round.
    pub relay_batch: i64,
    /// How often the relay looks at the outbox when no notification woke it.
    pub relay_poll_ms: u64,
    /// How long Kafka may take to acknowledge a published event before the relay retries it.
    pub publish_timeout_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            topic: "order-events".into(),
            partitions: 6,
            replication_factor: 1,
            group_prefix: "shop-".into(),
            consumer_instances: 1,
            relay_batch: 500,
            relay_poll_ms: 1000,
            publish_timeout_ms: 30_000,
        }
    }
}
