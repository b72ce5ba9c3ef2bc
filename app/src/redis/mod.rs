//! Redis, shared by every app replica: the catalog cache, rate limits and the denylist of
//! revoked access tokens. Optional: without `redis.url` the app runs as before (a cache in
//! each process, no rate limits, logout ends the refresh token only).
//!
//! Redis is never a reason to fail a request that PostgreSQL could answer: every call has a
//! short timeout, and after a failure a circuit breaker skips Redis for `breaker_ms`, so
//! requests go on without it instead of each waiting out a timeout. The connection manager
//! reconnects by itself when Redis is back.
//!
//! With `redis.sentinels`, the server is the primary the Sentinels name (Redis Sentinel's
//! service discovery): asked on every new connection, and again after an error that says
//! the connection may lead elsewhere now (a write refused as READONLY, a dropped or silent
//! connection), so a failover moves the app to the new primary within a breaker period.

pub mod breaker;

use std::{future::Future, sync::Arc, time::Duration};

use ::redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
    IntoConnectionInfo, RedisResult,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use self::breaker::Breaker;
use crate::ratelimit::RateLimitConfig;

/// The `redis` section of the configuration.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`; absent (or empty) means no Redis. With `sentinels`, only its
    /// password, user name and database are used: the Sentinels name the server.
    #[serde(skip_serializing, deserialize_with = "empty_is_none")]
    pub url: Option<SecretString>,
    /// The Sentinels to ask for the primary, `host:port` separated by commas
    /// (APP_REDIS__SENTINELS); empty: `url` names the server.
    #[serde(deserialize_with = "comma_list")]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub sentinel_master: String,
    /// The password the Sentinels require (their `requirepass`; APP_REDIS__SENTINEL_PASSWORD);
    /// absent (or empty): they are asked without AUTH.
    #[serde(skip_serializing, deserialize_with = "empty_is_none")]
    pub sentinel_password: Option<SecretString>,
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
            sentinels: Vec::new(),
            sentinel_master: "shop".into(),
            sentinel_password: None,
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

/// `redis://host:port` for a Sentinel given as `host:port`, or None when it is not that.
fn sentinel_url(host_port: &str) -> Option<String> {
    let (host, port) = host_port.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port > 0 && !host.contains('/')).then(|| format!("redis://{host}:{port}"))
}

/// How to reach a Sentinel given as `host:port`, with the Sentinels' password if any.
fn sentinel_connection(
    host_port: &str,
    password: Option<&SecretString>,
) -> RedisResult<::redis::ConnectionInfo> {
    let url = sentinel_url(host_port).ok_or_else(|| {
        ::redis::RedisError::from((
            ::redis::ErrorKind::InvalidClientConfig,
            "redis.sentinels: not host:port",
            host_port.to_owned(),
        ))
    })?;
    let mut info = url.into_connection_info()?;
    info.redis.password = password.map(|p| p.expose_secret().to_owned());
    Ok(info)
}

/// An empty `APP_REDIS__URL` (a ConfigMap's blank value) turns Redis off like no value.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    let url: Option<String> = Option::deserialize(deserializer)?;
    Ok(url.filter(|u| !u.trim().is_empty()).map(SecretString::from))
}

/// `a:1, b:2` (an environment variable) or a list (TOML), as a list without blanks.
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
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
        if self.sentinels.is_empty() && self.sentinel_password.is_some() {
            return Err((
                "redis.sentinel_password",
                "given without redis.sentinels, the Sentinels it is for (set APP_REDIS__SENTINELS)"
                    .into(),
            ));
        }
        if !self.sentinels.is_empty() {
            if self.url.is_none() {
                return Err((
                    "redis.sentinels",
                    "given without redis.url, which carries the password and database (set APP_REDIS__URL)".into(),
                ));
            }
            if let Some(bad) = self.sentinels.iter().find(|s| sentinel_url(s).is_none()) {
                return Err((
                    "redis.sentinels",
                    format!("{bad:?} is not host:port; set APP_REDIS__SENTINELS to host:port[,host:port...]"),
                ));
            }
            if self.sentinel_master.trim().is_empty() {
                return Err((
                    "redis.sentinel_master",
                    "must name the primary the Sentinels monitor (set APP_REDIS__SENTINEL_MASTER)"
                        .into(),
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
    #[error("redis: the server the Sentinels named is not the primary (any more)")]
    NotPrimary,
}

impl RedisError {
    /// An OOM reply: Redis is up, at `maxmemory`, and refuses writes.
    fn is_refused_for_memory(&self) -> bool {
        matches!(self, RedisError::Command(e) if e.code() == Some("OOM"))
    }

    /// Whether the connection may lead to the wrong server now: a write refused by a
    /// replica, a connection dropped (Sentinel kills clients on failover) or silent.
    fn may_have_moved(&self) -> bool {
        match self {
            RedisError::Timeout(_) | RedisError::NotPrimary => true,
            RedisError::Command(e) => {
                e.kind() == ::redis::ErrorKind::ReadOnly
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
            }
            RedisError::Off | RedisError::Skipped => false,
        }
    }
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

/// Where connections go.
enum Target {
    /// The server `redis.url` names.
    Server(::redis::Client),
    /// The primary the Sentinels name at the time of connecting.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

struct Inner {
    cache_lock: Duration,
    cache_lock_wait: Duration,
    target: Target,
    /// Connected on first use, so the app starts while Redis is still coming up; dropped
    /// after an error that may mean the primary moved (Sentinel targets only).
    manager: std::sync::Mutex<Option<ConnectionManager>>,
    /// Held while connecting: one attempt at a time, the other callers wait for it.
    connecting: tokio::sync::Mutex<()>,
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
        let target = if config.sentinels.is_empty() {
            Target::Server(::redis::Client::open(url.expose_secret())?)
        } else {
            let server = url.expose_secret().into_connection_info()?;
            let sentinels: Vec<::redis::ConnectionInfo> = config
                .sentinels
                .iter()
                .map(|s| sentinel_connection(s, config.sentinel_password.as_ref()))
                .collect::<Result<_, _>>()?;
            let node = SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(server.redis),
            };
            Target::Sentinel(tokio::sync::Mutex::new(SentinelClient::build(
                sentinels,
                config.sentinel_master.clone(),
                Some(node),
                SentinelServerType::Master,
            )?))
        };
        Ok(Self(Some(Arc::new(Inner {
            target,
            manager: std::sync::Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
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
            // A full Redis (maxmemory with noeviction, docs/k8s.md) refuses writes at once
            // and still answers reads: the breaker stays closed, so the denylist is still
            // consulted while cache writes are refused.
            Err(error) if error.is_refused_for_memory() => {
                metrics::counter!("redis_errors_total", "op" => op).increment(1);
                tracing::warn!(op, %error, "redis is full; the write was refused");
            }
            Err(error) => {
                inner.breaker.failed();
                metrics::counter!("redis_errors_total", "op" => op).increment(1);
                tracing::warn!(op, %error, "redis call failed; skipping redis for a moment");
            }
        }
        result
    }

    /// Whether Redis answers now (a skipped call counts as down): a PING, or with Sentinels
    /// a ROLE that must say `master` (a replica answers PING too, but refuses writes).
    pub async fn health(&self) -> Health {
        let Some(inner) = &self.0 else {
            return Health::Off;
        };
        let answer = match inner.target {
            Target::Server(_) => self
                .run("ping", |mut conn| async move {
                    ::redis::cmd("PING").query_async::<String>(&mut conn).await
                })
                .await
                .map(drop),
            Target::Sentinel(_) => {
                let role = self
                    .run("role", |mut conn| async move {
                        ::redis::cmd("ROLE")
                            .query_async::<Vec<::redis::Value>>(&mut conn)
                            .await
                    })
                    .await;
                match role {
                    Ok(values) => match values.first() {
                        Some(::redis::Value::BulkString(role)) if role == b"master" => Ok(()),
                        _ => {
                            // Demoted since: the next call asks the Sentinels again.
                            inner.forget();
                            Err(RedisError::NotPrimary)
                        }
                    },
                    Err(error) => Err(error),
                }
            }
        };
        if answer.is_ok() {
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
        let conn = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, call(conn))
            .await
            .map_err(|_| RedisError::Timeout(self.timeout.as_millis() as u64))
            .and_then(|r| r.map_err(RedisError::from));
        if let Err(error) = &result {
            if matches!(self.target, Target::Sentinel(_)) && error.may_have_moved() {
                self.forget();
            }
        }
        result
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _turn = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let millis = self.connect_timeout.as_millis() as u64;
        let conn = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| RedisError::Timeout(millis))??;
        *self.manager.lock().expect("redis manager lock") = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> RedisResult<ConnectionManager> {
        let client = match &self.target {
            Target::Server(client) => client.clone(),
            // The Sentinels name the primary, and it is asked whether it is one.
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await?,
        };
        // No retries of its own: the breaker decides when to try again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_factor(50)
            .set_max_delay(500);
        ConnectionManager::new_with_config(client, config).await
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.manager.lock().expect("redis manager lock").clone()
    }

    /// Drops the connection: the next call connects again, asking the Sentinels.
    fn forget(&self) {
        *self.manager.lock().expect("redis manager lock") = None;
    }
}
