//! Typed configuration: defaults, then an optional TOML file (`APP_CONFIG`), then `APP_*`
//! environment variables (`__` separates levels: `APP_DATABASE__URL`). The same binary runs
//! on a laptop and in Kubernetes, where the variables come from a ConfigMap and Secrets.

use std::{net::SocketAddr, path::Path, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::money::Currency;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub payments: PaymentsConfig,
    #[serde(default)]
    pub shop: ShopConfig,
    #[serde(default)]
    pub catalog: crate::catalog::cache::CacheConfig,
    #[serde(default)]
    pub events: crate::events::EventsConfig,
    #[serde(default)]
    pub worker: crate::worker::WorkerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub jobs: crate::jobs::config::JobsConfig,
    #[serde(default)]
    pub smtp: crate::jobs::config::SmtpConfig,
    #[serde(default)]
    pub redis: crate::redis::RedisConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    /// How long shutdown waits for requests in flight before giving up on them.
    pub shutdown_grace_ms: u64,
    /// Origins allowed by CORS; empty means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the client;
    /// from anyone else the header is ignored.
    pub trusted_proxies: Vec<crate::http::client_ip::ProxyNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            shutdown_grace_ms: 20_000,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The primary (read-write) database.
    pub url: SecretString,
    /// Replicas for catalog reads; the primary serves them when absent.
    #[serde(default)]
    pub read_url: Option<SecretString>,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    #[serde(default = "defaults::statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC key for access tokens; at least 32 bytes.
    pub jwt_secret: SecretString,
    #[serde(default = "defaults::access_ttl_s")]
    pub access_ttl_s: u64,
    #[serde(default = "defaults::refresh_ttl_s")]
    pub refresh_ttl_s: u64,
    #[serde(default = "defaults::reset_ttl_s")]
    pub reset_ttl_s: u64,
    #[serde(default)]
    pub argon2: Argon2Config,
}

/// Argon2id cost. The defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Shared secret of the payment gateway's webhook signatures.
    pub webhook_secret: SecretString,
    /// Signatures older than this are refused (replay protection).
    #[serde(default = "defaults::webhook_tolerance_s")]
    pub webhook_tolerance_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConfig {
    pub currency: Currency,
    /// Flat shipping fee in minor units, waived from `free_shipping_from_minor` upwards.
    pub shipping_flat_minor: i64,
    pub free_shipping_from_minor: i64,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            currency: Currency::EUR,
            shipping_flat_minor: 495,
            free_shipping_from_minor: 5_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `shop=debug,tower_http=info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".into(),
        }
    }
}

mod defaults {
    pub fn max_connections() -> u32 {
        20
    }
    pub fn acquire_timeout_ms() -> u64 {
        3_000
    }
    pub fn statement_timeout_ms() -> u64 {
        5_000
    }
    pub fn access_ttl_s() -> u64 {
        15 * 60
    }
    pub fn refresh_ttl_s() -> u64 {
        30 * 24 * 3600
    }
    pub fn reset_ttl_s() -> u64 {
        30 * 60
    }
    pub fn webhook_tolerance_s() -> u64 {
        300
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {}", describe(.0))]
    Load(Box<figment::Error>),
    #[error("configuration: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Config {
    /// Loads from the file named by `APP_CONFIG` (if set) and the `APP_*` variables.
    pub fn load() -> Result<Self, ConfigError> {
        let mut figment = Figment::new()
            .merge(Serialized::default("http", HttpConfig::default()))
            .merge(Serialized::default("shop", ShopConfig::default()))
            .merge(Serialized::default(
                "catalog",
                crate::catalog::cache::CacheConfig::default(),
            ))
            .merge(Serialized::default(
                "events",
                crate::events::EventsConfig::default(),
            ))
            .merge(Serialized::default(
                "worker",
                crate::worker::WorkerConfig::default(),
            ))
            .merge(Serialized::default("log", LogConfig::default()))
            .merge(Serialized::default(
                "redis",
                crate::redis::RedisConfig::default(),
            ));
        if let Ok(path) = std::env::var("APP_CONFIG") {
            figment = figment.merge(Toml::file_exact(Path::new(&path)));
        }
        // APP_SEED_PASSWORD and APP_STAFF_PASSWORD are read by `seed` and `staff`, not config.
        figment = figment.merge(Env::prefixed("APP_").split("__").ignore(&[
            "config",
            "seed_password",
            "staff_password",
        ]));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.check()?;
        Ok(config)
    }

    /// Constraints serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        if self.auth.jwt_secret.expose_secret().len() < 32 {
            return invalid("auth.jwt_secret", "must be at least 32 bytes");
        }
        if self.payments.webhook_secret.expose_secret().len() < 16 {
            return invalid("payments.webhook_secret", "must be at least 16 bytes");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.http.body_limit_bytes < 1024 {
            return invalid("http.body_limit_bytes", "must be at least 1024");
        }
        if self.events.partitions < 1 || self.events.replication_factor < 1 {
            return invalid(
                "events.partitions",
                "partitions and replication_factor must be at least 1",
            );
        }
        if self.events.consumer_instances == 0 || self.events.relay_batch < 1 {
            return invalid(
                "events.consumer_instances",
                "consumer_instances and relay_batch must be at least 1",
            );
        }
        if let Err((key, problem)) = self.redis.check() {
            return invalid(key, &problem);
        }
        if self.shop.shipping_flat_minor < 0 || self.shop.free_shipping_from_minor < 0 {
            return invalid("shop", "shipping amounts must not be negative");
        }
        self.jobs.check()?;
        self.smtp.check()?;
        Ok(())
    }
}

/// The keys without a default, by section.
const REQUIRED: [(&str, &str); 3] = [
    ("database", "url"),
    ("auth", "jwt_secret"),
    ("payments", "webhook_secret"),
];

/// Every problem figment found, each naming its key and where to set it.
fn describe(error: &figment::Error) -> String {
    let problems: Vec<String> = (*error)
        .clone()
        .into_iter()
        .map(|e| match &e.kind {
            figment::error::Kind::MissingField(field) => {
                let mut key: Vec<&str> = e
                    .path
                    .iter()
                    .map(String::as_str)
                    .chain([field.as_ref()])
                    .collect();
                // A whole section is missing: name the key it needs.
                if let [section] = key[..] {
                    if let Some((_, required)) = REQUIRED.iter().find(|(s, _)| *s == section) {
                        key.push(required);
                    }
                }
                let env = format!("APP_{}", key.join("__").to_uppercase());
                format!(
                    "missing `{}`: set {env}, or `{}` in the file named by APP_CONFIG",
                    key.join("."),
                    key.join(".")
                )
            }
            _ => e.to_string(),
        })
        .collect();
    problems.join("; ")
}
