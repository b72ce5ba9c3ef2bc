//! The catalog cache in Redis, shared by replicas: two apps on one database and one Redis.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{harness::TestApp, redis::RedisServer};

async fn get(app: &TestApp, path: &str) -> (StatusCode, String, Value) {
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
async fn replicas_share_pages_and_a_write_on_one_empties_both() {
    let redis = RedisServer::start();
    let a = TestApp::spawn_with(|c| redis.configure(c)).await;
    let b = a.replica(|c| redis.configure(c)).await;
    let sku = a.stocked_product(1000, 5).await;
    let path = format!("/api/v1/products/{}", sku.product_id);

    let (status, outcome, first) = get(&a, &path).await;
    assert_eq!((status, outcome.as_str()), (StatusCode::OK, "MISS"));
    // B has never seen the page: it comes from Redis.
    let (_, outcome, from_b) = get(&b, &path).await;
    assert_eq!((outcome.as_str(), &from_b), ("HIT", &first));
    assert_eq!(b.state.catalog_cache.loads(), 0);

    // A change behind the apps' backs stays unseen while cached...
    sqlx::query("UPDATE products SET name = 'Renamed in SQL' WHERE id = $1")
        .bind(sku.product_id)
        .execute(&a.pool)
        .await
        .unwrap();
    assert_eq!(get(&b, &path).await.2["name"], first["name"]);
    // ...and a write through A is seen by B at once.
    let staff = a.staff().await;
    let (status, _) = a
        .call(
            Method::PATCH,
            &path,
            Some(&staff.token),
            Some(json!({ "name": "Renamed by staff" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, outcome, fresh) = get(&b, &path).await;
    assert_eq!(
        (outcome.as_str(), fresh["name"].as_str()),
        ("MISS", Some("Renamed by staff"))
    );
    assert_eq!(get(&a, &path).await.1, "HIT", "A reads what B stored");

    // Not kept: errors other than 404, and anything asked with a token.
    let (status, outcome, _) = get(&b, "/api/v1/products?limit=0").await;
    assert_eq!(
        (status, outcome.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "BYPASS")
    );
    let (status, outcome, _) = get(&b, "/api/v1/products/999999999").await;
    assert_eq!((status, outcome.as_str()), (StatusCode::NOT_FOUND, "MISS"));
    assert_eq!(get(&a, "/api/v1/products/999999999").await.1, "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_changes_empty_product_pages_of_every_replica() {
    let redis = RedisServer::start();
    let a = TestApp::spawn_with(|c| redis.configure(c)).await;
    let b = a.replica(|c| redis.configure(c)).await;
    let sku = a.stocked_product(1000, 5).await;
    let path = format!("/api/v1/products/{}", sku.product_id);
    assert_eq!(get(&b, &path).await.2["variants"][0]["available"], 5);

    // A restock through A's inventory route.
    let staff = a.staff().await;
    let (status, body) = a
        .post(
            "/api/v1/inventory/restock",
            Some(&staff.token),
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": 3 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(get(&b, &path).await.2["variants"][0]["available"], 8);

    // A change made elsewhere (a stock event consumer) and announced with `invalidate`.
    sqlx::query("UPDATE stock SET reserved = 2 WHERE variant_id = $1")
        .bind(sku.variant_id)
        .execute(&a.pool)
        .await
        .unwrap();
    assert_eq!(get(&b, &path).await.2["variants"][0]["available"], 8);
    shop::catalog::cache::invalidate(&a.state).await.unwrap();
    let (_, outcome, page) = get(&b, &path).await;
    assert_eq!(
        (outcome.as_str(), &page["variants"][0]["available"]),
        ("MISS", &json!(6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_on_two_replicas_make_one_query() {
    let redis = RedisServer::start();
    // A slow page makes the race real: every request arrives while the first is computing.
    let a = TestApp::spawn_with(|c| redis.configure(c)).await;
    let b = a.replica(|c| redis.configure(c)).await;
    for _ in 0..3 {
        a.stocked_product(1000, 5).await;
    }
    let path = "/api/v1/search?q=product";
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let request = app.client.get(app.url(path));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let outcome = response.headers()["x-cache"].to_str().unwrap().to_owned();
                (response.status(), outcome)
            })
        })
        .collect();
    let mut misses = 0;
    for task in tasks {
        let (status, outcome) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        misses += usize::from(outcome == "MISS");
    }
    let loads = a.state.catalog_cache.loads() + b.state.catalog_cache.loads();
    assert_eq!(
        (loads, misses),
        (1, 1),
        "40 concurrent misses on two replicas: one database query"
    );
    let metrics = a.metrics_text().await;
    assert!(metrics.contains("catalog_cache_loads_total"), "{metrics}");
    assert!(
        metrics.contains("catalog_cache_requests_total{outcome=\"HIT\",layer=\"redis\"}"),
        "{metrics}"
    );
}
