//! The HTTP surface: the domain routers under `/api/v1`, operational endpoints at the root,
//! and the middleware every request passes through.

pub mod client_ip;
mod health;
pub mod metrics;
mod middleware;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderName, HeaderValue, Method},
    routing::get,
    Extension, Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};

use crate::{error::ApiError, openapi, state::AppState};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application as one router.
pub fn router(state: AppState) -> Router {
    let (api, spec) = openapi::split();
    // Every matched route under /api/v1 counts against its client's budget.
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::ratelimit::middleware::limit_api,
    ));
    let spec = Arc::new(spec);
    let http = &state.config.http;

    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(Extension(state.catalog_cache.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(cors(&http.cors_origins))
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            http.request_timeout(),
            middleware::timeout,
        ));

    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(spec.as_ref().clone()) }),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::bad_request(
                "method_not_allowed",
                "this method is not allowed on this path",
            )
        })
        .layer(middleware)
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-cart-token"),
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            crate::ratelimit::LIMIT,
            crate::ratelimit::REMAINING,
            crate::ratelimit::RESET,
        ])
        .max_age(Duration::from_secs(600))
}

/// Serves until `shutdown` resolves, then stops accepting and drains requests in flight for
/// at most `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config.http.shutdown_grace();
    let app = router(state);
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    // The peer address feeds the client address of rate limits (http/client_ip.rs).
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests in flight");
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still in flight after the grace period");
            Ok(())
        }
    }
}

/// What a worker process serves: its metrics and liveness, nothing of the API.
pub fn worker_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(health::healthz))
        .with_state(state)
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
