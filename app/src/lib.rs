//! The shop API: every domain of the storefront on axum, sqlx and PostgreSQL.
//!
//! One module per domain (auth, users, catalog, cart, orders, payments, inventory), each
//! owning its routes, types and queries; the platform around them (config, errors, HTTP
//! middleware, telemetry, OpenAPI) lives beside them. The background side runs in
//! `app worker`: `events` (order events through Kafka) and `jobs` (RabbitMQ work queues).

pub mod auth;
pub mod cart;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
pub mod inventory;
pub mod jobs;
pub mod money;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod ratelimit;
pub mod redis;
pub mod seed;
pub mod state;
pub mod telemetry;
pub mod users;
pub mod worker;

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use state::AppState;
