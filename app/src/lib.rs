//! The shop API: every domain of the storefront on axum, sqlx and PostgreSQL.
//!
//! One module per domain (auth, users, catalog, cart, orders, payments, inventory), each
//! owning its routes, types and queries; the platform around them (config, errors, HTTP
//! middleware, telemetry, OpenAPI) lives beside them.

pub mod auth;
pub mod cart;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod inventory;
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

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use state::AppState;
