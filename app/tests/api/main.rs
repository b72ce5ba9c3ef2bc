//! API tests: the real app over HTTP against a real PostgreSQL and a real Kafka-protocol
//! broker (tansu).

#[allow(dead_code)]
mod harness;
mod ports;
use ports::free_port;
#[allow(dead_code)]
mod kafka;

mod auth;
mod authz;
mod cache;
mod cart;
mod catalog;
mod events;
mod fuzz;
mod inventory;
mod jobs;
mod orders;
mod payments;
mod platform;
mod rabbitmq;
mod rate_limits;
#[allow(dead_code)]
mod redis;
mod redis_cache;
mod redis_down;
mod redis_sentinel;
mod revocation;
mod smtp;
mod users;
#[allow(dead_code)]
mod worker_process;
