//! The Redis layer of the catalog cache, shared by every replica.
//!
//! Keys carry a generation: `catalog:gen` is a counter, and a page is stored under
//! `catalog:<gen>:<uri>`. A change to the catalog, a price or stock bumps the counter, and
//! every replica's next lookup reads the new generation and misses: invalidation costs one
//! INCR, and the old pages expire on their own. A lookup reads the generation and the page
//! in one round trip (a Lua script).
//!
//! Stampedes across replicas: the replica that misses first takes a short lock
//! (`SET NX PX`) and computes the page; the others wait for it a little
//! (`redis.cache_lock_wait_ms`), then query PostgreSQL themselves rather than wait longer.

use std::{
    sync::LazyLock,
    time::{Duration, Instant},
};

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use uuid::Uuid;

use super::cache::Stored;
use crate::redis::{Redis, RedisError};

/// KEYS[1] the generation counter; ARGV[1] the page key's prefix, ARGV[2] the URI.
static LOOKUP: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
",
    )
});

/// KEYS[1] the page, KEYS[2] its lock; ARGV[1] the lock's token (empty: not ours), ARGV[2]
/// the TTL in ms, ARGV[3] the page (absent: nothing to keep). Stores, then releases the
/// lock only if it is still ours.
static STORE: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
if ARGV[3] then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

#[derive(Clone)]
pub struct SharedCache {
    redis: Redis,
    ttl: Duration,
    lock_for: Duration,
    lock_wait: Duration,
}

/// The outcome of asking to compute a missing page.
pub enum Claim {
    /// This replica computes it; the token releases the lock.
    Won(String),
    /// Another replica is computing it.
    Lost,
    /// Redis could not say: compute it.
    Unknown,
}

impl SharedCache {
    pub fn new(redis: Redis, ttl: Duration, lock_for: Duration, lock_wait: Duration) -> Self {
        Self {
            redis,
            ttl,
            lock_for,
            lock_wait,
        }
    }

    pub fn is_on(&self) -> bool {
        self.redis.is_on()
    }

    fn page_key(&self, generation: u64, uri: &str) -> String {
        self.redis.key(format_args!("catalog:{generation}:{uri}"))
    }

    fn lock_key(&self, generation: u64, uri: &str) -> String {
        self.redis
            .key(format_args!("catalog:lock:{generation}:{uri}"))
    }

    /// The current generation, and the page of `uri` in it if some replica stored it.
    pub async fn lookup(&self, uri: &str) -> Result<(u64, Option<Stored>), RedisError> {
        let mut invocation = LOOKUP.prepare_invoke();
        invocation
            .key(self.redis.key("catalog:gen"))
            .arg(self.redis.key("catalog:"))
            .arg(uri);
        let (generation, page): (u64, Option<Vec<u8>>) = self
            .redis
            .run("cache_lookup", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok((
            generation,
            page.and_then(|bytes| decode(Bytes::from(bytes))),
        ))
    }

    pub async fn claim(&self, generation: u64, uri: &str) -> Claim {
        let token = Uuid::new_v4().simple().to_string();
        let key = self.lock_key(generation, uri);
        let lock_ms = self.lock_for.as_millis() as u64;
        let value = token.clone();
        let taken = self
            .redis
            .run("cache_lock", |mut conn| async move {
                ::redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(lock_ms)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        match taken {
            Ok(Some(_)) => Claim::Won(token),
            Ok(None) => Claim::Lost,
            Err(_) => Claim::Unknown,
        }
    }

    /// Waits up to `cache_lock_wait_ms` for another replica to store the page.
    pub async fn wait_for(&self, generation: u64, uri: &str) -> Option<Stored> {
        let key = self.page_key(generation, uri);
        let deadline = Instant::now() + self.lock_wait;
        let mut pause = Duration::from_millis(2);
        while Instant::now() < deadline {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(20));
            let key = key.clone();
            let page = self
                .redis
                .run("cache_wait", |mut conn| async move {
                    ::redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut conn)
                        .await
                })
                .await
                .ok()?;
            if let Some(page) = page {
                return decode(Bytes::from(page));
            }
        }
        None
    }

    /// Stores the page (if it is worth keeping) and releases the lock if this replica held it.
    pub async fn store(&self, generation: u64, uri: &str, page: Option<&Stored>, claim: &Claim) {
        let token = match claim {
            Claim::Won(token) => token.as_str(),
            _ => "",
        };
        if page.is_none() && token.is_empty() {
            return;
        }
        let mut invocation = STORE.prepare_invoke();
        invocation
            .key(self.page_key(generation, uri))
            .key(self.lock_key(generation, uri))
            .arg(token)
            .arg(self.ttl.as_millis() as u64);
        if let Some(page) = page {
            invocation.arg(encode(page));
        }
        let _ = self
            .redis
            .run("cache_store", |mut conn| async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
    }

    /// Starts a new generation: every replica misses from now on.
    pub async fn bump(&self) -> Result<(), RedisError> {
        if !self.redis.is_on() {
            return Ok(());
        }
        let key = self.redis.key("catalog:gen");
        self.redis
            .run("cache_invalidate", |mut conn| async move {
                ::redis::cmd("INCR")
                    .arg(key)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }
}

/// `<status> <content type>\n<body>`.
fn encode(page: &Stored) -> Vec<u8> {
    let content_type = page
        .content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut bytes = format!("{} {content_type}\n", page.status.as_u16()).into_bytes();
    bytes.extend_from_slice(&page.body);
    bytes
}

fn decode(bytes: Bytes) -> Option<Stored> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&bytes[..newline]).ok()?;
    let (status, content_type) = head.split_once(' ')?;
    Some(Stored {
        status: StatusCode::from_u16(status.parse().ok()?).ok()?,
        content_type: (!content_type.is_empty())
            .then(|| HeaderValue::from_str(content_type).ok())
            .flatten(),
        body: bytes.slice(newline + 1..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip() {
        let page = Stored {
            status: StatusCode::NOT_FOUND,
            content_type: Some(HeaderValue::from_static("application/problem+json")),
            body: Bytes::from_static(b"{\"a\":\"b\nc\"}"),
        };
        let back = decode(Bytes::from(encode(&page))).unwrap();
        assert_eq!(back.status, page.status);
        assert_eq!(back.content_type, page.content_type);
        assert_eq!(back.body, page.body);
        assert!(decode(Bytes::from_static(b"garbage")).is_none());
    }
}
