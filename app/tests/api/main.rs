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
mod jobs;
mod orders;
mod payments;
mod platform;
mod rabbitmq;
mod smtp;
mod users;
