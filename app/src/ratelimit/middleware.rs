//! The per-client limit of every request under `/api/v1`.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{charge, Charge};
use crate::{http::client_ip::client_ip, state::AppState};

/// Charges the request to its client: the subject of a valid access token, else the
/// client's address. The answer carries the `RateLimit-*` headers (unless the handler set
/// its own, tighter ones, as login does); over the limit it is a 429 with `Retry-After`.
pub async fn limit_api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = &state.config.redis.rate_limit.api;
    if !state.redis.is_on() || limit.requests == 0 {
        return next.run(request).await;
    }
    let subject = match crate::auth::extract::verified_subject(request.headers(), &state) {
        Some(user) => format!("user:{user}"),
        None => {
            let ip = client_ip(
                request.headers(),
                request.extensions(),
                &state.config.http.trusted_proxies,
            );
            format!("ip:{ip}")
        }
    };
    let charged = charge(
        &state.redis,
        &[Charge {
            class: "api",
            limit,
            subject,
        }],
    )
    .await;
    match charged {
        Err(unavailable) => unavailable.into_response(),
        Ok(None) => next.run(request).await,
        Ok(Some(decision)) if !decision.allowed => {
            (decision.headers(), decision.refusal()).into_response()
        }
        Ok(Some(decision)) => {
            let mut response = next.run(request).await;
            let headers = response.headers_mut();
            for (name, value) in decision.headers() {
                if let Some(name) = name {
                    headers.entry(name).or_insert(value);
                }
            }
            response
        }
    }
}
