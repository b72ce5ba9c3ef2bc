//! Platform behaviour: health, readiness, metrics, OpenAPI, errors, limits, shutdown.

use reqwest::{header, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::harness::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_unreachable() {
    let app = TestApp::spawn_with(|c| {
        // A port nothing listens on.
        let port = crate::ports::free_port();
        c.database.url = format!("postgres://postgres@127.0.0.1:{port}/none").into();
        c.database.acquire_timeout_ms = 500;
    })
    .await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"], "unavailable");
    assert_eq!(app.get("/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_a_separate_read_database() {
    let app = TestApp::spawn_with(|c| {
        let url = c
            .database
            .url
            .expose_secret()
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        c.database.read_url = Some(format!("{url}/no_such_replica").into());
        c.database.acquire_timeout_ms = 500;
    })
    .await;
    let (status, body) = app.get("/readyz", None).await;
    // Writes still work, so the app stays ready; the report names the missing replica.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["database_read"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_problem_details() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "/problems/not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_given() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_per_route() {
    let app = TestApp::spawn().await;
    app.get("/healthz", None).await;
    let text = app.metrics_text().await;
    assert!(
        text.contains("http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("db_pool_connections"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_served_and_docs_copy_is_current() {
    let app = TestApp::spawn().await;
    let (status, served) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        served["openapi"]
    );
    let generated = serde_json::to_value(shop::openapi::spec()).unwrap();
    assert_eq!(served, generated);

    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let expected = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    let current = std::fs::read_to_string(&docs).unwrap_or_default();
    if current != expected {
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&docs, expected).unwrap();
        } else {
            panic!(
                "docs/openapi.json is out of date; refresh it with\n  \
                 UPDATE_OPENAPI=1 cargo test -p app --test api openapi\nor\n  \
                 cargo run -p app -- openapi > docs/openapi.json"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/products"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused() {
    let app = TestApp::spawn_with(|c| c.http.body_limit_bytes = 2048).await;
    let big = "x".repeat(4096);
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "email": "a@b.example", "password": big, "full_name": "A" }),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large");
}

/// Shutdown stops accepting connections but lets a request in flight finish: here one that
/// waits for a row lock the test holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let mut app = TestApp::spawn().await;
    let user = app.customer().await;
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user.id)
        .execute(&mut *blocker)
        .await
        .unwrap();

    let in_flight = {
        let request = app
            .client
            .patch(app.url("/api/v1/users/me"))
            .bearer_auth(&user.token)
            .json(&json!({ "full_name": "Renamed During Shutdown" }));
        tokio::spawn(request.send())
    };
    // Wait until the request is blocked on the lock inside PostgreSQL.
    let mut waiting = 0i64;
    for _ in 0..100 {
        waiting = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 1, "the request should be waiting for the lock");

    app.shutdown.take().unwrap().send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let server = app.server.take().unwrap();
    assert!(
        !server.is_finished(),
        "the server must wait for the request in flight"
    );
    let refused = app.client.get(app.url("/healthz")).send().await;
    assert!(
        refused.is_err(),
        "new connections are refused while draining"
    );

    blocker.rollback().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let name: String = sqlx::query_scalar("SELECT full_name FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Renamed During Shutdown");
}

/// With `database.read_url`, catalog reads go to the replica and writes to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_go_to_the_read_pool() {
    let (replica_url, replica) = crate::harness::database().await;
    let app = TestApp::spawn_with(|c| c.database.read_url = Some(replica_url.clone().into())).await;
    // A product that exists only on the "replica".
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO products (slug, name, price_minor, currency) VALUES ('only-on-replica', 'Replica Lamp', 100, 'EUR') RETURNING id",
    )
    .fetch_one(&replica)
    .await
    .unwrap();
    sqlx::query("INSERT INTO variants (product_id, sku, name, price_minor, currency) VALUES ($1, 'REPLICA-1', 'Default', 100, 'EUR')")
        .bind(id)
        .execute(&replica)
        .await
        .unwrap();
    let (status, product) = app.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{product}");
    assert_eq!(product["name"], "Replica Lamp");
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(
        (status, body["checks"]["database_read"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // Writes go to the primary, where the product does not exist.
    let staff = app.staff().await;
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/products/{id}"),
            Some(&staff.token),
            Some(json!({ "name": "X" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
