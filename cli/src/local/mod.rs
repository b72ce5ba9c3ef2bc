//! The local HA topology as processes: etcd, Patroni/PostgreSQL, HAProxy, Redis, RabbitMQ,
//! Kafka (tansu), an SMTP sink, the app's workers and replicas, and nginx, all on 127.0.0.1,
//! kept running by `shopctl supervise local` and driven by `up`, `status`, `logs`, `down`.
//!
//! Everything lives under the environment's state directory (`.shopctl/local/`):
//! `conf/` rendered configuration, `<component>/` data, `logs/<component>.log`,
//! `run/state.json` + `run/events.jsonl` + `run/supervisor.sock`, `secrets.toml` (0600).

pub mod components;
pub mod control;
pub mod down;
pub mod http;
pub mod logs;
pub mod ready;
pub mod render;
pub mod secrets;
pub mod status;
pub mod supervisor;
pub mod tools;
pub mod topology;
pub mod up;

pub use topology::{local_topology, Topology};
