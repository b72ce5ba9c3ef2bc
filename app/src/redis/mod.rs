//! Redis, shared by every app replica: the catalog cache, rate limits and the denylist of
//! revoked access tokens. Optional: without `redis.url` the app runs as before (a cache in
//! each process, no rate limits, logout ends the refresh token only).
//!
//! Redis is never a reason to fail a request that PostgreSQL could answer: every call has a
//! short timeout, and after a failure a circuit breaker skips Redis for `breaker_ms`, so
//! requests go on without it instead of each waiting out a timeout. The connection manager
//! reconnects by itself when Redis is back.

pub mod breaker;

use std::{future::Future, sync::Arc, time::Duration};

use ::redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    RedisResult,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use self::breaker::Breaker;
use crate::ratelimit::RateLimitConfig;

/// The `redis` section of the configuration.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`; absent (or empty) means no Redis.
    #[serde(skip_serializing, deserialize_with = "empty_is_none")]
    pub url: Option<SecretString>,
    /// Put before every key, so environments or apps can share one Redis.
    pub key_prefix: String,
    /// How long one command may take before Redis counts as down.
    pub timeout_ms: u64,
    /// How long connecting may take.
    pub connect_timeout_ms: u64,
    /// How long Redis is skipped after a failure.
    pub breaker_ms: u64,
    /// How long one replica holds the right to compute a missing catalog page.
    pub cache_lock_ms: u64,
    /// How long other replicas wait for that page before querying PostgreSQL themselves.
    pub cache_lock_wait_ms: u64,
    pub rate_limit: RateLimitConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "shop:".into(),
            timeout_ms: 150,
            connect_timeout_ms: 250,
            breaker_ms: 1000,
            cache_lock_ms: 2000,
            cache_lock_wait_ms: 300,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// An empty `APP_REDIS__URL` (a ConfigMap's blank value) turns Redis off like no value.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    let url: Option<String> = Option::deserialize(deserializer)?;
    Ok(url.filter(|u| !u.trim().is_empty()).map(SecretString::from))
}

impl RedisConfig {
    /// Constraints serde cannot express, as (key, problem).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.url {
            if let Err(error) = ::redis::Client::open(url.expose_secret()) {
                return Err((
                    "redis.url",
                    format!("not a Redis URL ({error}); set APP_REDIS__URL to redis://host:port"),
                ));
            }
        }
        for (key, value) in [
            ("redis.timeout_ms", self.timeout_ms),
            ("redis.connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if value == 0 {
                let env = format!("APP_{}", key.to_uppercase().replace('.', "__"));
                return Err((key, format!("must be at least 1 (set {env})")));
            }
        }
        self.rate_limit.check()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis is not configured")]
    Off,
    #[error("redis skipped: it failed moments ago")]
    Skipped,
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("redis: {0}")]
    Command(#[from] ::redis::RedisError),
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    Down,
    Off,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Down => "down",
            Health::Off => "off",
        }
    }
}

/// A handle on Redis (or on its absence); cheap to clone.
#[derive(Clone)]
pub struct Redis(Option<Arc<Inner>>);

struct Inner {
    cache_lock: Duration,
    cache_lock_wait: Duration,
    client: ::redis::Client,
    /// Connected on first use, so the app starts while Redis is still coming up.
    manager: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
    connect_timeout: Duration,
    breaker: Breaker,
    prefix: String,
}

impl Redis {
    /// Builds the handle without connecting.
    pub fn new(config: &RedisConfig) -> Result<Self, ::redis::RedisError> {
        let Some(url) = &config.url else {
            return Ok(Self::off());
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(Self(Some(Arc::new(Inner {
            client: ::redis::Client::open(url.expose_secret())?,
            manager: tokio::sync::OnceCell::new(),
            timeout,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            breaker: Breaker::new(Duration::from_millis(config.breaker_ms), timeout),
            prefix: config.key_prefix.clone(),
            cache_lock: Duration::from_millis(config.cache_lock_ms),
            cache_lock_wait: Duration::from_millis(config.cache_lock_wait_ms),
        }))))
    }

    pub fn off() -> Self {
        Self(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// How long a replica may hold the right to compute a catalog page, and how long
    /// others wait for it.
    pub fn cache_lock_times(&self) -> (Duration, Duration) {
        self.0
            .as_ref()
            .map_or((Duration::ZERO, Duration::ZERO), |inner| {
                (inner.cache_lock, inner.cache_lock_wait)
            })
    }

    /// The full name of a key: the configured prefix, then `name`.
    pub fn key(&self, name: impl std::fmt::Display) -> String {
        let prefix = self.0.as_ref().map_or("", |inner| inner.prefix.as_str());
        format!("{prefix}{name}")
    }

    /// Runs one Redis operation (a command, a script, a pipeline) under the timeout and
    /// the breaker. `op` names it in the `redis_errors_total` metric.
    pub async fn run<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = self.0.as_ref().ok_or(RedisError::Off)?;
        if !inner.breaker.allow() {
            return Err(RedisError::Skipped);
        }
        let result = inner.call(call).await;
        match &result {
            Ok(_) => inner.breaker.succeeded(),
            Err(error) => {
                inner.breaker.failed();
                metrics::counter!("redis_errors_total", "op" => op).increment(1);
                tracing::warn!(op, %error, "redis call failed; skipping redis for a moment");
            }
        }
        result
    }

    /// Whether Redis answers a PING now (a skipped call counts as down).
    pub async fn health(&self) -> Health {
        if !self.is_on() {
            return Health::Off;
        }
        let pong = self
            .run("ping", |mut conn| async move {
                ::redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await;
        if pong.is_ok() {
            Health::Ok
        } else {
            Health::Down
        }
    }
}

impl Inner {
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = match self.manager.get() {
            Some(conn) => conn.clone(),
            None => {
                let connect = self.manager.get_or_try_init(|| {
                    // No retries of its own: the breaker decides when to try again.
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(self.connect_timeout)
                        .set_response_timeout(self.timeout)
                        .set_number_of_retries(1)
                        .set_factor(50)
                        .set_max_delay(500);
                    ConnectionManager::new_with_config(self.client.clone(), config)
                });
                let millis = self.connect_timeout.as_millis() as u64;
                tokio::time::timeout(self.connect_timeout, connect)
                    .await
                    .map_err(|_| RedisError::Timeout(millis))??
                    .clone()
            }
        };
        tokio::time::timeout(self.timeout, call(conn))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout.as_millis() as u64))?
            .map_err(RedisError::from)
    }
}
