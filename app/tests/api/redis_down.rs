//! Redis stopped under a running app: the API keeps serving from PostgreSQL, readiness says
//! so, limits fail open or closed as configured, and all is well again once Redis is back.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    harness::{TestApp, PASSWORD},
    redis::RedisServer,
};

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    app.get("/readyz", None).await
}

/// Polls until `/readyz` reports Redis as `want`, at most 10 s.
async fn wait_for_redis(app: &TestApp, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(app).await;
        if body["checks"]["redis"] == want {
            assert_eq!(status, StatusCode::OK, "{body}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn x_cache(app: &TestApp, path: &str) -> (StatusCode, String, Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status();
    let outcome = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (status, outcome, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_while_redis_is_down_and_recovers() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| redis.configure(c)).await;
    let sku = app.stocked_product(1000, 5).await;
    let path = format!("/api/v1/products/{}", sku.product_id);
    let user = app.customer().await;
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, body["checks"]["redis"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert_eq!(x_cache(&app, &path).await.1, "MISS");

    redis.stop();
    let started = Instant::now();
    // The catalog, sign-in and authenticated reads all work, each promptly: the first call
    // that finds Redis gone waits at most its timeout, the breaker spares the rest.
    for _ in 0..5 {
        let (status, _, page) = x_cache(&app, &path).await;
        assert_eq!(
            (status, page["id"].as_i64()),
            (StatusCode::OK, Some(sku.product_id))
        );
    }
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": user.email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/users/me", Some(&access)).await.0,
        StatusCode::OK
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "{elapsed:?} for 7 requests"
    );
    // Writes still empty this process's cache.
    let staff = app.staff().await;
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&staff.token),
            Some(json!({ "name": "Renamed while Redis was down" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        x_cache(&app, &path).await.2["name"],
        "Renamed while Redis was down"
    );
    // Ready all the same: the app serves without Redis.
    let (status, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["redis"], "down");
    assert_eq!(body["checks"]["database"], "ok");
    // A logout while Redis is down still ends the refresh token; the access token lives on.
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&access),
            json!({ "refresh_token": "unknown" }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&access)).await.0,
        StatusCode::OK
    );
    assert!(app.metrics_text().await.contains("redis_errors_total"));

    // Back: the connection comes back by itself, and Redis is used again.
    redis.restart();
    wait_for_redis(&app, "ok").await;
    let (_, outcome, page) = x_cache(&app, &path).await;
    assert_eq!(
        (outcome.as_str(), page["name"].as_str()),
        ("MISS", Some("Renamed while Redis was down")),
        "the restarted Redis is empty"
    );
    assert_eq!(x_cache(&app, &path).await.1, "HIT");
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&access),
            json!({ "refresh_token": "unknown" }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_fail_open_or_closed_as_configured() {
    let redis = RedisServer::start();
    let open = TestApp::spawn_with(|c| redis.configure(c)).await;
    let closed = open
        .replica(|c| {
            redis.configure(c);
            c.redis.rate_limit.api.fail_open = false;
            c.redis.rate_limit.login_account.fail_open = false;
        })
        .await;
    let user = open.customer().await;
    assert_eq!(
        closed.get("/api/v1/categories", None).await.0,
        StatusCode::OK
    );

    redis.stop();
    // Open (the default): served without limits, and without RateLimit headers.
    let response = open
        .client
        .get(open.url("/api/v1/categories"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit-limit").is_none());
    // Closed: refused with 503 and Retry-After, until Redis answers again.
    for path in ["/api/v1/categories", "/api/v1/products"] {
        let response = closed.client.get(closed.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "rate_limiter_unavailable");
    }
    let (status, body) = closed
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": user.email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("rate_limiter_unavailable")
        )
    );
    // Readiness stays 200: the app is up; its limiter is not.
    assert_eq!(readyz(&closed).await.0, StatusCode::OK);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.get("/api/v1/categories", None).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the limiter never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
