//! Small request-level layers: the tracing span, the timeout, the panic response.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::Response,
    middleware::Next,
    response::IntoResponse,
};

use super::REQUEST_ID;
use crate::error::ApiError;

/// One span per request carrying its id, so every log line of the request can be found.
pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route,
        request_id,
    )
}

pub async fn timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit.as_millis() as u64).into_response(),
    }
}

/// A panic is a bug: log it, answer with a bare 500 problem (no message, no backtrace).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
