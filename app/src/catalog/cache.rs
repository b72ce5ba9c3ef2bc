//! A short-lived cache of public catalog responses (product pages, lists, search, the
//! category tree): in Redis, shared by every replica, when `redis.url` is set; and in each
//! app process.
//!
//! Catalog reads dominate a shop's traffic and change rarely, so each response is kept for
//! `catalog.cache_ttl_ms` (5 s by default) and concurrent misses of one URL wait for a
//! single database query instead of stampeding: within a process through the in-process
//! cache's single flight, across replicas through a short Redis lock (shared_cache.rs).
//! Successful catalog and inventory writes empty the cache at once, for every replica when
//! Redis is up (a new generation) and for this process otherwise; `invalidate` does the same
//! for other code that changes what pages show (stock events). Stock shown on product pages
//! may lag checkouts by at most the TTL (checkout itself always reads the database).
//! Requests carrying a token bypass the cache.
//!
//! While Redis is down the process cache alone serves, as without Redis: other replicas
//! then see a change within the TTL.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
    Extension,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::shared_cache::{Claim, SharedCache};
use crate::{
    redis::{Redis, RedisError},
    state::AppState,
};

/// Catalog cache settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a response is reused; 0 turns the cache off.
    pub cache_ttl_ms: u64,
    pub cache_max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            cache_ttl_ms: 5000,
            cache_max_entries: 50_000,
        }
    }
}

/// Largest response body kept (a page of 100 products is far below it).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// A response as stored: status, content type and body.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<HeaderValue>,
    pub(super) body: Bytes,
}

impl Stored {
    async fn from_response(response: Response) -> Stored {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(body) => Stored {
                status: parts.status,
                content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                body,
            },
            Err(_) => {
                let error = crate::error::ApiError::internal(anyhow::anyhow!(
                    "a catalog response over {MAX_BODY} bytes"
                ));
                let body = serde_json::to_vec(&error.problem())
                    .unwrap_or_default()
                    .into();
                tracing::error!("a catalog response over {MAX_BODY} bytes");
                Stored {
                    status: error.status(),
                    content_type: Some(HeaderValue::from_static("application/problem+json")),
                    body,
                }
            }
        }
    }

    fn response(&self, outcome: &'static str) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        if let Some(content_type) = &self.content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
        }
        response
            .headers_mut()
            .insert("x-cache", HeaderValue::from_static(outcome));
        response
    }
}

#[derive(Clone)]
pub struct CatalogCache {
    /// This process's entries, keyed by generation and URI (`-` for the generation while
    /// Redis is off or down).
    entries: Option<moka::future::Cache<String, Arc<Stored>>>,
    shared: SharedCache,
    /// Responses computed by the handlers (misses that reached the database).
    loads: Arc<AtomicU64>,
}

impl CatalogCache {
    pub fn new(config: &CacheConfig, redis: Redis) -> Self {
        let ttl = Duration::from_millis(config.cache_ttl_ms);
        let entries = (config.cache_ttl_ms > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.cache_max_entries)
                .time_to_live(ttl)
                .build()
        });
        let (lock_for, lock_wait) = redis.cache_lock_times();
        Self {
            entries,
            shared: SharedCache::new(redis, ttl, lock_for, lock_wait),
            loads: Arc::default(),
        }
    }

    /// Forgets everything (after a write that may change any page): this process's entries,
    /// and, through a new generation, every replica's. `Err` when Redis could not be told;
    /// other replicas then show the change within the TTL.
    pub async fn invalidate(&self) -> Result<(), RedisError> {
        let Some(entries) = &self.entries else {
            return Ok(());
        };
        entries.invalidate_all();
        self.shared.bump().await
    }

    /// How many responses this process computed on a miss (its catalog queries).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

/// Empties the catalog cache of every replica: for code that changes what catalog pages
/// show outside the catalog and inventory routes (stock events, imports).
pub async fn invalidate(state: &AppState) -> Result<(), RedisError> {
    state.catalog_cache.invalidate().await
}

/// Middleware of the catalog routes: serves anonymous GETs from the cache, and empties it
/// after a successful write.
pub async fn cache_public_reads(
    Extension(cache): Extension<CatalogCache>,
    request: Request,
    next: Next,
) -> Response {
    let Some(entries) = &cache.entries else {
        return next.run(request).await;
    };
    if request.method() != Method::GET {
        return invalidate_after(&cache, request, next).await;
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let uri = request.uri().to_string();
    // Redis first: the generation and the page in one round trip. Down or off, this
    // process's cache serves alone.
    let generation = if cache.shared.is_on() {
        match cache.shared.lookup(&uri).await {
            Ok((_, Some(page))) => {
                count("HIT", "redis");
                return page.response("HIT");
            }
            Ok((generation, None)) => Some(generation),
            Err(_) => None,
        }
    } else {
        None
    };
    let key = match generation {
        Some(generation) => format!("{generation}:{uri}"),
        None => format!("-:{uri}"),
    };
    let mut outcome = "HIT";
    let loaded = entries
        .try_get_with(key, async {
            let claim = match generation {
                Some(generation) => cache.shared.claim(generation, &uri).await,
                None => Claim::Unknown,
            };
            if let (Claim::Lost, Some(generation)) = (&claim, generation) {
                if let Some(page) = cache.shared.wait_for(generation, &uri).await {
                    return Ok(Arc::new(page));
                }
            }
            outcome = "MISS";
            cache.loads.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("catalog_cache_loads_total").increment(1);
            let stored = Arc::new(Stored::from_response(next.run(request).await).await);
            // Only answers that stay true until the next write are kept; the coalesced
            // waiters of any other answer get a copy of it.
            let keep = stored.status == StatusCode::OK || stored.status == StatusCode::NOT_FOUND;
            if let Some(generation) = generation {
                let page = keep.then_some(stored.as_ref());
                cache.shared.store(generation, &uri, page, &claim).await;
            }
            if keep {
                Ok(stored)
            } else {
                Err(stored)
            }
        })
        .await;
    count(
        outcome,
        if generation.is_some() {
            "redis"
        } else {
            "local"
        },
    );
    match loaded {
        Ok(stored) => stored.response(outcome),
        Err(stored) => stored.response("BYPASS"),
    }
}

fn count(outcome: &'static str, layer: &'static str) {
    metrics::counter!("catalog_cache_requests_total", "outcome" => outcome, "layer" => layer)
        .increment(1);
}

/// Middleware of routes that change what catalog pages show (inventory).
pub async fn invalidate_on_write(
    Extension(cache): Extension<CatalogCache>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET {
        return next.run(request).await;
    }
    invalidate_after(&cache, request, next).await
}

async fn invalidate_after(cache: &CatalogCache, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().is_success() {
        // A failure is logged and counted by the Redis layer; the write itself succeeded.
        let _ = cache.invalidate().await;
    }
    response
}
