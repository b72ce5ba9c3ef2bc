//! API tests: the real app over HTTP against a real PostgreSQL.

#[allow(dead_code)]
mod harness;

mod auth;
mod authz;
mod cache;
mod cart;
mod catalog;
mod fuzz;
mod inventory;
mod orders;
mod payments;
mod platform;
mod rate_limits;
#[allow(dead_code)]
mod redis;
mod redis_cache;
mod redis_down;
mod revocation;
mod users;
