//! Rate limits kept in Redis, so every replica counts against the same budget: login
//! attempts per account and per client address, and API requests per client (the token's
//! subject when signed in, else the address).
//!
//! The algorithm is GCRA (the generic cell rate algorithm): a limit of `requests` per
//! `per_s` lets one request through every `per_s / requests` seconds on average, with bursts
//! of up to `requests`. Redis keeps one number per client, the theoretical arrival time of
//! its next request, and one Lua script reads and moves it atomically with Redis's clock,
//! so replicas with skewed clocks agree. Unlike a fixed window it has no doubled burst at a
//! window's edge.

mod gcra;
pub mod middleware;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

pub use gcra::Decision;

use crate::{error::ApiError, redis::Redis};

/// One limit: `requests` per `per_s` seconds; `requests = 0` turns it off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub requests: u32,
    pub per_s: u64,
    /// When Redis cannot be asked: let requests through (true) or refuse them with 503
    /// `rate_limiter_unavailable` (false).
    #[serde(default = "yes")]
    pub fail_open: bool,
}

fn yes() -> bool {
    true
}

/// The `redis.rate_limit` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Login attempts per account (email, in any letter case).
    pub login_account: Limit,
    /// Login attempts per client address.
    pub login_ip: Limit,
    /// Requests under `/api/v1` per client.
    pub api: Limit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let limit = |requests| Limit {
            requests,
            per_s: 60,
            fail_open: true,
        };
        Self {
            login_account: limit(5),
            login_ip: limit(20),
            api: limit(600),
        }
    }
}

impl RateLimitConfig {
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, limit) in [
            ("redis.rate_limit.login_account.per_s", &self.login_account),
            ("redis.rate_limit.login_ip.per_s", &self.login_ip),
            ("redis.rate_limit.api.per_s", &self.api),
        ] {
            if limit.requests > 0 && limit.per_s == 0 {
                let env = format!("APP_{}", key.to_uppercase().replace('.', "__"));
                return Err((key, format!("must be at least 1 (set {env})")));
            }
        }
        Ok(())
    }
}

/// What is counted: the limit's name (in keys and metrics), its settings, and whose
/// budget it is.
pub struct Charge<'a> {
    pub class: &'static str,
    pub limit: &'a Limit,
    pub subject: String,
}

/// Counts one request against every charge, in one Redis call. `Ok(None)`: nothing to
/// report (Redis is off, every limit is off, or Redis failed and the limits fail open).
/// A refusal is `Ok(Some(decision))` with `decision.allowed == false`.
pub async fn charge(redis: &Redis, charges: &[Charge<'_>]) -> Result<Option<Decision>, ApiError> {
    let charges: Vec<&Charge> = charges.iter().filter(|c| c.limit.requests > 0).collect();
    if !redis.is_on() || charges.is_empty() {
        return Ok(None);
    }
    match gcra::run(redis, &charges).await {
        Ok(decision) => {
            if !decision.allowed {
                metrics::counter!("rate_limited_total", "limit" => decision.class).increment(1);
            }
            Ok(Some(decision))
        }
        Err(_) if charges.iter().all(|c| c.limit.fail_open) => {
            metrics::counter!("rate_limit_skipped_total").increment(1);
            Ok(None)
        }
        Err(_) => Err(ApiError::Unavailable {
            code: "rate_limiter_unavailable",
            detail: "the rate limiter is briefly unavailable; retry shortly".into(),
            retry_after_s: 1,
        }),
    }
}

pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl Decision {
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` (seconds until the whole budget is back),
    /// of the tightest limit.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_s));
        headers
    }

    /// The 429 for a refused request (with `Retry-After`).
    pub fn refusal(&self) -> ApiError {
        ApiError::TooManyRequests {
            retry_after_s: self.retry_after_s,
        }
    }
}

/// A key for a subject that may be personal (an email): its hash, not the text.
pub fn hashed(subject: &str) -> String {
    hex::encode(&crate::auth::token::hash_token(subject)[..16])
}
