//! The catalog response cache: hits, invalidation on writes, expiry, bypass with a token,
//! one database query for concurrent misses.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestApp;

async fn get(app: &TestApp, path: &str) -> (StatusCode, String, serde_json::Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status();
    let outcome = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, outcome, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_reused_until_a_write_or_the_ttl() {
    let app = TestApp::spawn_with(|c| c.catalog.cache_ttl_ms = 60_000).await;
    let sku = app.stocked_product(1000, 5).await;
    let path = format!("/api/v1/products/{}", sku.product_id);
    let (status, outcome, first) = get(&app, &path).await;
    assert_eq!((status, outcome.as_str()), (StatusCode::OK, "MISS"));
    let (_, outcome, again) = get(&app, &path).await;
    assert_eq!(outcome, "HIT");
    assert_eq!(again, first);

    // A change behind the app's back is not seen while cached...
    sqlx::query("UPDATE products SET name = 'Renamed in SQL' WHERE id = $1")
        .bind(sku.product_id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(get(&app, &path).await.2["name"], first["name"]);
    // ...but a write through the API empties the cache.
    let staff = app.staff().await;
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&staff.token),
            Some(json!({ "name": "Renamed by staff" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, outcome, fresh) = get(&app, &path).await;
    assert_eq!(
        (outcome.as_str(), fresh["name"].as_str()),
        ("MISS", Some("Renamed by staff"))
    );

    // With a token, the cache is not used at all.
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&staff.token)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-cache").is_none());
    // Errors other than 404 are not kept.
    let (status, outcome, _) = get(&app, "/api/v1/products?limit=0").await;
    assert_eq!(
        (status, outcome.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "BYPASS")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire() {
    let app = TestApp::spawn_with(|c| c.catalog.cache_ttl_ms = 200).await;
    let sku = app.stocked_product(1000, 5).await;
    let path = format!("/api/v1/products/{}", sku.product_id);
    assert_eq!(get(&app, &path).await.1, "MISS");
    assert_eq!(get(&app, &path).await.1, "HIT");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(get(&app, &path).await.1, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_make_one_query() {
    let app = TestApp::spawn_with(|c| c.catalog.cache_ttl_ms = 60_000).await;
    app.stocked_product(1000, 5).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let request = app.client.get(app.url("/api/v1/products?limit=20"));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (
                    response.status(),
                    response.headers()["x-cache"].to_str().unwrap().to_owned(),
                )
            })
        })
        .collect();
    let mut misses = 0;
    for task in tasks {
        let (status, outcome) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        misses += usize::from(outcome == "MISS");
    }
    assert_eq!(misses, 1, "concurrent misses of one URL wait for one load");
}
