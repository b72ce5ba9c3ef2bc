//! A short-lived cache of public catalog responses (product pages, lists, search, the
//! category tree) in each app process.
//!
//! Catalog reads dominate a shop's traffic and change rarely, so each response is kept for
//! `catalog.cache_ttl_ms` (5 s by default) and concurrent misses of one URL wait for a
//! single database query instead of stampeding. Successful catalog and inventory writes
//! through this process empty it at once; other replicas see a change within the TTL, and
//! stock shown on product pages may lag checkouts by at most the TTL (checkout itself always
//! reads the database). Requests carrying a token bypass it.

use std::{sync::Arc, time::Duration};

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
struct Stored {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
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
    entries: Option<moka::future::Cache<String, Arc<Stored>>>,
}

impl CatalogCache {
    pub fn new(config: &CacheConfig) -> Self {
        let entries = (config.cache_ttl_ms > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.cache_max_entries)
                .time_to_live(Duration::from_millis(config.cache_ttl_ms))
                .build()
        });
        Self { entries }
    }

    /// Forgets everything (after a write that may change any page).
    pub fn invalidate(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
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
    let key = request.uri().to_string();
    let mut missed = false;
    let loaded = entries
        .try_get_with(key, async {
            missed = true;
            let stored = Arc::new(Stored::from_response(next.run(request).await).await);
            // Only answers that stay true until the next write are kept; the coalesced
            // waiters of any other answer get a copy of it.
            if stored.status == StatusCode::OK || stored.status == StatusCode::NOT_FOUND {
                Ok(stored)
            } else {
                Err(stored)
            }
        })
        .await;
    let outcome = if missed { "MISS" } else { "HIT" };
    metrics::counter!("catalog_cache_requests_total", "outcome" => outcome).increment(1);
    match loaded {
        Ok(stored) => stored.response(outcome),
        Err(stored) => stored.response("BYPASS"),
    }
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
        cache.invalidate();
    }
    response
}
