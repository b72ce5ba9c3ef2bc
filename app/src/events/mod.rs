//! Order events: a transactional outbox in PostgreSQL, a relay that publishes it to Kafka,
//! and the consumers that react to it.
//!
//! Guarantees (docs/events/README.md): an event exists exactly when its order change
//! committed (same transaction); the relay publishes each at least once, in order per order
//! (one partition per order key, idempotent producer, acks=all); each consumer applies each
//! event at most once (processed_events), so effects happen exactly once.

pub mod config;
pub mod consume;
pub mod consumers;
pub mod kafka;
pub mod model;
pub mod outbox;
pub mod relay;

pub use config::EventsConfig;
pub use model::{EventType, OrderEvent};
