//! Inventory: staff stock operations, the ledger always summing to the stock, authorization.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Stocked, TestApp};

async fn checkout(app: &TestApp, token: &str) -> Value {
    let (status, order) = app.post("/api/v1/checkout", Some(token), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

fn stock_path(sku: &Stocked) -> String {
    format!("/api/v1/inventory/variants/{}", sku.variant_id)
}

async fn movement_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inventory_movements")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_receive_goods_and_correct_counts() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 10).await;

    // A second warehouse, made through the API.
    let (status, warehouse) = app
        .post(
            "/api/v1/warehouses",
            Some(&staff.token),
            json!({ "code": "HAM-1", "name": " Hamburg " }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{warehouse}");
    assert_eq!(warehouse["name"], "Hamburg");
    let hamburg = warehouse["id"].as_i64().unwrap();
    let (status, problem) = app
        .post(
            "/api/v1/warehouses",
            Some(&staff.token),
            json!({ "code": "HAM-1", "name": "Again" }),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("warehouse_code_taken"))
    );
    let (status, problem) = app
        .post(
            "/api/v1/warehouses",
            Some(&staff.token),
            json!({ "code": "ham 1", "name": "" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    let (status, list) = app.get("/api/v1/warehouses", Some(&staff.token)).await;
    assert_eq!(status, StatusCode::OK);
    let codes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 2);
    assert_eq!(codes[1], "HAM-1");

    // The first delivery to Hamburg creates its stock row.
    let restock = json!({ "variant_id": sku.variant_id, "warehouse_id": hamburg, "quantity": 7, "reason": "delivery 42" });
    let (status, stock) = app
        .post(
            "/api/v1/inventory/restock",
            Some(&staff.token),
            restock.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["available"].as_i64()),
        (Some(17), Some(17))
    );
    assert_eq!(stock["warehouses"].as_array().unwrap().len(), 2);
    let (_, stock) = app
        .post("/api/v1/inventory/restock", Some(&staff.token), restock)
        .await;
    let row = &stock["warehouses"][1];
    assert_eq!(row["warehouse_id"], hamburg);
    assert_eq!(row["warehouse_code"], "HAM-1");
    assert_eq!(
        (
            row["on_hand"].as_i64(),
            row["reserved"].as_i64(),
            row["low_stock_threshold"].as_i64()
        ),
        (Some(14), Some(0), Some(5))
    );

    // Breakage in the first warehouse.
    let (status, stock) = app
        .post(
            "/api/v1/inventory/adjust",
            Some(&staff.token),
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": -3, "reason": "dropped a box" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    assert_eq!(stock["warehouses"][0]["on_hand"], 7);
    assert_eq!(stock["on_hand"], 21);
    assert_eq!(app.stock(&sku).await, (7, 0));

    // GET shows the same.
    let (status, read) = app.get(&stock_path(&sku), Some(&staff.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, stock);
    assert!(read["sku"].as_str().unwrap().starts_with("SKU-"));
    let (status, _) = app
        .get("/api/v1/inventory/variants/987654321", Some(&staff.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stock_requests_change_nothing() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 10).await;
    let other = app.stocked_product(100, 0).await;
    let before = movement_count(&app).await;
    let cases = [
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": 0 }),
            "/quantity",
        ),
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": 1_000_001 }),
            "/quantity",
        ),
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": 1, "reason": "  " }),
            "/reason",
        ),
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": 987654321, "warehouse_id": sku.warehouse_id, "quantity": 1 }),
            "/variant_id",
        ),
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": sku.variant_id, "warehouse_id": 987654321, "quantity": 1 }),
            "/warehouse_id",
        ),
        (
            "/api/v1/inventory/restock",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": "1" }),
            "",
        ),
        (
            "/api/v1/inventory/adjust",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": 0, "reason": "x" }),
            "/delta",
        ),
        (
            "/api/v1/inventory/adjust",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": -1, "reason": " " }),
            "/reason",
        ),
        (
            "/api/v1/inventory/adjust",
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": -1 }),
            "",
        ),
        (
            "/api/v1/inventory/adjust",
            json!({ "variant_id": 987654321, "warehouse_id": sku.warehouse_id, "delta": 1, "reason": "x" }),
            "/variant_id",
        ),
    ];
    for (path, body, pointer) in cases {
        let (status, problem) = app.post(path, Some(&staff.token), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {problem}"
        );
        if !pointer.is_empty() {
            assert_eq!(
                problem["errors"][0]["field"], pointer,
                "{path} {body}: {problem}"
            );
        }
    }
    // A variant never stocked in the warehouse has no count to correct.
    let (status, _) = app
        .post(
            "/api/v1/inventory/adjust",
            Some(&staff.token),
            json!({ "variant_id": other.variant_id, "warehouse_id": sku.warehouse_id, "delta": 1, "reason": "found one" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = app
        .call(
            Method::POST,
            "/api/v1/inventory/adjust",
            Some(&staff.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");
    assert_eq!(movement_count(&app).await, before);
    assert_eq!(app.stock(&sku).await, (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_hand_never_drops_below_what_is_reserved() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 5).await;
    let shopper = app.shopper_with(sku.variant_id, 3).await;
    checkout(&app, &shopper.token).await;
    assert_eq!(app.stock(&sku).await, (5, 3));
    let before = movement_count(&app).await;
    let adjust = |delta: i32| {
        app.post(
            "/api/v1/inventory/adjust",
            Some(&staff.token),
            json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": delta, "reason": "stocktake" }),
        )
    };
    let (status, problem) = adjust(-3).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("insufficient_stock")),
        "{problem}"
    );
    assert_eq!(
        app.stock(&sku).await,
        (5, 3),
        "a refused adjustment changes nothing"
    );
    assert_eq!(movement_count(&app).await, before);
    // Down to exactly the reserved units is allowed; then nothing is available.
    let (status, stock) = adjust(-2).await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    assert_eq!(
        (
            stock["on_hand"].as_i64(),
            stock["reserved"].as_i64(),
            stock["available"].as_i64()
        ),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(adjust(-1).await.0, StatusCode::CONFLICT);
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_stock_lists_the_most_urgent_first() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let plenty = app.stocked_product(100, 100).await;
    let two_left = app.stocked_product(100, 2).await;
    let at_threshold = app.stocked_product(100, 5).await;
    // Six on hand but four reserved: two available, as urgent as `two_left` (ties go by id).
    let mostly_reserved = app.stocked_product(100, 6).await;
    let shopper = app.shopper_with(mostly_reserved.variant_id, 4).await;
    checkout(&app, &shopper.token).await;
    let sold_out = app.stocked_product(100, 1).await;
    let shopper = app.shopper_with(sold_out.variant_id, 1).await;
    checkout(&app, &shopper.token).await;

    let (status, rows) = app
        .get("/api/v1/inventory/low-stock", Some(&staff.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    let ids: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["variant_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            sold_out.variant_id,
            two_left.variant_id,
            mostly_reserved.variant_id,
            at_threshold.variant_id
        ]
    );
    assert!(!ids.contains(&plenty.variant_id));
    let first = &rows[0];
    assert_eq!(
        (
            first["on_hand"].as_i64(),
            first["reserved"].as_i64(),
            first["available"].as_i64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(rows[2]["available"], 2);

    let (_, rows) = app
        .get("/api/v1/inventory/low-stock?limit=1", Some(&staff.token))
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/v1/inventory/low-stock?limit=0", Some(&staff.token))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/api/v1/inventory/low-stock?limit=x", Some(&staff.token))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_reads_newest_first_by_cursor() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 10).await;
    let noise = app.stocked_product(100, 10).await;
    let shopper = app.shopper_with(sku.variant_id, 2).await;
    let order = checkout(&app, &shopper.token).await;
    let order_id = order["id"].as_str().unwrap();
    let (status, _) = app
        .post(
            &format!("/api/v1/orders/{order_id}/cancel"),
            Some(&shopper.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The release follows the order.cancelled event.
    app.settle().await;
    let body = json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": 1, "reason": "found one" });
    assert_eq!(
        app.post("/api/v1/inventory/adjust", Some(&staff.token), body)
            .await
            .0,
        StatusCode::OK
    );

    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/inventory/movements?variant_id={}&limit=2",
            sku.variant_id
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(&path, Some(&staff.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["adjust", "release", "reserve", "restock"]);
    assert_eq!(seen[0]["actor_id"], staff.id.to_string());
    assert_eq!(seen[0]["reason"], "found one");
    assert_eq!(
        (
            seen[1]["order_id"].as_str(),
            seen[1]["reserved_delta"].as_i64()
        ),
        (Some(order_id), Some(-2))
    );
    assert_eq!(
        (
            seen[2]["order_id"].as_str(),
            seen[2]["reserved_delta"].as_i64()
        ),
        (Some(order_id), Some(2))
    );
    assert_eq!(seen[3]["on_hand_delta"], 10);
    assert!(seen.iter().all(|m| m["variant_id"] == sku.variant_id));

    // Unfiltered, the other variant's restock is there too; by warehouse, only its own.
    let (_, all) = app
        .get("/api/v1/inventory/movements", Some(&staff.token))
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert!(all["next_cursor"].is_null());
    let (_, by_warehouse) = app
        .get(
            &format!(
                "/api/v1/inventory/movements?warehouse_id={}",
                noise.warehouse_id
            ),
            Some(&staff.token),
        )
        .await;
    assert_eq!(by_warehouse["items"].as_array().unwrap().len(), 1);

    for bad in [
        "cursor=nonsense",
        "cursor=bW92ZW1lbnQ6eA",
        "variant_id=x",
        "unknown=1",
    ] {
        let (status, problem) = app
            .get(
                &format!("/api/v1/inventory/movements?{bad}"),
                Some(&staff.token),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }
    assert_eq!(
        app.get("/api/v1/inventory/movements?limit=101", Some(&staff.token))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_staff_see_or_change_stock() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let sku = app.stocked_product(100, 10).await;
    let restock =
        json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "quantity": 5 });
    let adjust = json!({ "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": -5, "reason": "mine now" });
    let calls: [(Method, String, Option<Value>); 7] = [
        (Method::GET, stock_path(&sku), None),
        (
            Method::POST,
            "/api/v1/inventory/restock".into(),
            Some(restock),
        ),
        (
            Method::POST,
            "/api/v1/inventory/adjust".into(),
            Some(adjust),
        ),
        (Method::GET, "/api/v1/inventory/low-stock".into(), None),
        (Method::GET, "/api/v1/inventory/movements".into(), None),
        (Method::GET, "/api/v1/warehouses".into(), None),
        (
            Method::POST,
            "/api/v1/warehouses".into(),
            Some(json!({ "code": "MINE", "name": "Mine" })),
        ),
    ];
    for (method, path, body) in calls {
        let (status, problem) = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {problem}"
        );
        let (status, problem) = app
            .call(method.clone(), &path, Some(&customer.token), body)
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path}"
        );
    }
    assert_eq!(app.stock(&sku).await, (10, 0));
    let warehouses: i64 = sqlx::query_scalar("SELECT count(*) FROM warehouses")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(warehouses, 1);
}

/// Restocks, adjustments, checkouts, cancellations, payments and refunds, some of them at
/// once: afterwards every stock row equals the sum of its movements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ledger_sums_to_the_stock_after_a_mix_of_operations() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 20).await;
    let (_, warehouse) = app
        .post(
            "/api/v1/warehouses",
            Some(&staff.token),
            json!({ "code": "SECOND", "name": "Second" }),
        )
        .await;
    let second = warehouse["id"].as_i64().unwrap();

    // Twenty concurrent staff operations on both warehouses: +2 restocks and -1 adjustments.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (path, body) = if i % 2 == 0 {
                let warehouse_id = if i % 4 == 0 { sku.warehouse_id } else { second };
                let body = json!({ "variant_id": sku.variant_id, "warehouse_id": warehouse_id, "quantity": 2 });
                ("/api/v1/inventory/restock", body)
            } else {
                let body = json!({
                    "variant_id": sku.variant_id, "warehouse_id": sku.warehouse_id, "delta": -1, "reason": "shrinkage",
                });
                ("/api/v1/inventory/adjust", body)
            };
            let request = app.client.post(app.url(path)).bearer_auth(&staff.token).json(&body);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    // First warehouse: 20 + 5 * 2 - 10 = 20; second: 5 * 2 = 10.
    assert_eq!(app.stock(&sku).await, (20, 0));
    let second_stock = Stocked {
        warehouse_id: second,
        ..sku
    };
    assert_eq!(app.stock(&second_stock).await, (10, 0));

    // Orders in every stock-changing state.
    let mut orders = Vec::new();
    for _ in 0..4 {
        let shopper = app.shopper_with(sku.variant_id, 3).await;
        orders.push((
            checkout(&app, &shopper.token).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            shopper,
        ));
    }
    let status = |id: &str, to: &str| {
        let path = format!("/api/v1/orders/{id}/status");
        let body = json!({ "status": to });
        let app = &app;
        let token = staff.token.clone();
        async move { app.post(&path, Some(&token), body).await }
    };
    // 0 stays pending; 1 is cancelled by its owner; 2 is paid and shipped; 3 is paid and refunded.
    let (code, _) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", orders[1].0),
            Some(&orders[1].1.token),
            json!({}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    for to in ["paid", "fulfilling", "shipped"] {
        assert_eq!(status(&orders[2].0, to).await.0, StatusCode::OK);
    }
    for to in ["paid", "refunded"] {
        assert_eq!(status(&orders[3].0, to).await.0, StatusCode::OK);
    }
    assert!(
        app.ledger_mismatches().await.is_empty(),
        "{:?}",
        app.ledger_mismatches().await
    );
    let (_, stock) = app.get(&stock_path(&sku), Some(&staff.token)).await;
    // 30 units; 3 shipped for good; 3 reserved by the pending order.
    assert_eq!(
        (
            stock["on_hand"].as_i64(),
            stock["reserved"].as_i64(),
            stock["available"].as_i64()
        ),
        (Some(27), Some(3), Some(24))
    );
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(negative, 0);
}
