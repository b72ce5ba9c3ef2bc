//! Checkout and orders: no oversell under concurrency, idempotency, the state machine.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shop::orders::OrderStatus;

use crate::harness::TestApp;

async fn checkout(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value, bool) {
    let mut request = app
        .client
        .post(app.url("/api/v1/checkout"))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        replayed,
    )
}

/// 200 customers race for 50 units: exactly 50 orders, the rest out of stock, never a 5xx,
/// stock never negative and the ledger sums to it. Cancelling gives units back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_never_oversell() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(1500, 50).await;
    let mut shoppers = Vec::new();
    for _ in 0..200 {
        shoppers.push(app.shopper_with(sku.variant_id, 1).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(shoppers.len()));
    let tasks: Vec<_> = shoppers
        .iter()
        .map(|user| {
            let request = app
                .client
                .post(app.url("/api/v1/checkout"))
                .bearer_auth(&user.token)
                .json(&json!({}));
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let response = request.send().await.unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    let mut placed = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        *by_status.entry(status.as_u16()).or_default() += 1;
        match status {
            StatusCode::CREATED => placed.push(body["id"].as_str().unwrap().to_owned()),
            StatusCode::CONFLICT => assert_eq!(body["code"], "out_of_stock", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(by_status.get(&201), Some(&50), "{by_status:?}");
    assert_eq!(by_status.get(&409), Some(&150), "{by_status:?}");
    assert_eq!(app.stock(&sku).await, (50, 50));
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 50);
    assert!(app.ledger_mismatches().await.is_empty());

    // The losers' carts are intact; the winners' are empty.
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM cart_lines")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(lines, 150);

    // Ten winners cancel: their units are available again.
    let owners: Vec<(String, uuid::Uuid)> =
        sqlx::query_as("SELECT id::text, user_id FROM orders ORDER BY id LIMIT 10")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for (order, owner) in owners {
        let token = shoppers
            .iter()
            .find(|u| u.id == owner)
            .unwrap()
            .token
            .clone();
        let (status, body) = app
            .post(
                &format!("/api/v1/orders/{order}/cancel"),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "cancelled");
    }
    assert_eq!(app.stock(&sku).await, (50, 40));
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_places_an_order_from_the_cart() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(1999, 5).await;
    let user = app.shopper_with(sku.variant_id, 2).await;
    let (status, order, replayed) = checkout(&app, &user.token, None, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(!replayed);
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(
        order["subtotal"],
        json!({ "amount_minor": 3998, "currency": "EUR" })
    );
    assert_eq!(order["shipping"]["amount_minor"], 495);
    assert_eq!(order["total"]["amount_minor"], 3998 + 495);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["shipping_address"]["city"], "Berlin");
    assert_eq!(order["history"][0]["to"], "pending_payment");
    assert_eq!(app.stock(&sku).await, (5, 2));
    let (_, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(cart["item_count"], 0);

    // The order is in the user's history and readable by its owner.
    let (status, page) = app.get("/api/v1/orders", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["id"], order["id"]);
    let path = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&user.token)).await.1["id"], order["id"]);

    // An empty cart cannot be checked out.
    let (status, problem, _) = checkout(&app, &user.token, None, json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("cart_empty"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_changes_nothing() {
    let app = TestApp::spawn().await;
    let plenty = app.stocked_product(100, 10).await;
    let scarce = app.stocked_product(100, 1).await;
    let user = app.shopper_with(plenty.variant_id, 3).await;
    app.post(
        "/api/v1/cart/lines",
        Some(&user.token),
        json!({ "variant_id": scarce.variant_id, "quantity": 2 }),
    )
    .await;
    let (status, problem, _) = checkout(&app, &user.token, None, json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_stock")),
        "{problem}"
    );
    assert_eq!(
        app.stock(&plenty).await,
        (10, 0),
        "the first line's reservation was rolled back"
    );
    assert_eq!(app.stock(&scarce).await, (1, 0));
    let (_, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(cart["item_count"], 5, "the cart is intact");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_is_split_across_warehouses() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(100, 2).await;
    let second: i64 = sqlx::query_scalar(
        "INSERT INTO warehouses (code, name) VALUES ('WH-SECOND', 'Second') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    shop::inventory::ledger::restock(&mut tx, sku.variant_id, second, 3, uuid::Uuid::nil(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let user = app.shopper_with(sku.variant_id, 4).await;
    let (status, order, _) = checkout(&app, &user.token, None, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let items = order["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let quantities: i64 = items.iter().map(|i| i["quantity"].as_i64().unwrap()).sum();
    assert_eq!(quantities, 4);
    assert_eq!(order["subtotal"]["amount_minor"], 400);
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_order() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(700, 10).await;
    let user = app.shopper_with(sku.variant_id, 1).await;
    let (status, first, replayed) = checkout(&app, &user.token, Some("key-1"), json!({})).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    let (status, again, replayed) = checkout(&app, &user.token, Some("key-1"), json!({})).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again, first);

    // The same key with another body is refused.
    let address = app.address(&user, false).await;
    let (status, problem, _) = checkout(
        &app,
        &user.token,
        Some("key-1"),
        json!({ "shipping_address_id": address }),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );

    // A bad key is a bad request.
    let (status, problem, _) = checkout(&app, &user.token, Some(" "), json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key"))
    );
    assert_eq!(app.stock(&sku).await, (10, 1));
}

/// The key names the request and the cart it checked out: a retry after the cart was emptied
/// is a replay, a retry with another cart is refused, and neither places an order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_bound_to_the_cart() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(700, 10).await;
    let other = app.stocked_product(300, 10).await;
    let user = app.shopper_with(sku.variant_id, 2).await;
    let add = |variant_id: i64, quantity: i32| {
        app.post(
            "/api/v1/cart/lines",
            Some(&user.token),
            json!({ "variant_id": variant_id, "quantity": quantity }),
        )
    };
    let (status, first, _) = checkout(&app, &user.token, Some("cart-key"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    // Another cart with the same key: refused, and the cart stays as it is.
    add(other.variant_id, 1).await;
    let (status, problem, replayed) =
        checkout(&app, &user.token, Some("cart-key"), json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
    assert!(!replayed);
    let (_, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(cart["item_count"], 1);

    // The same cart again (or an empty one, as the first checkout left it) is the same request.
    app.call(Method::DELETE, "/api/v1/cart", Some(&user.token), None)
        .await;
    let (status, again, replayed) = checkout(&app, &user.token, Some("cart-key"), json!({})).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    add(sku.variant_id, 2).await;
    let (status, again, replayed) = checkout(&app, &user.token, Some("cart-key"), json!({})).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["id"], first["id"]);

    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(orders, 1);
    assert_eq!(app.stock(&sku).await, (10, 2));
    assert_eq!(app.stock(&other).await, (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_place_one_order() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(700, 10).await;
    let user = app.shopper_with(sku.variant_id, 2).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/api/v1/checkout"))
                .bearer_auth(&user.token)
                .header("Idempotency-Key", "same-key")
                .json(&json!({}));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.stock(&sku).await, (10, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_needs_an_address() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(700, 10).await;
    let user = app.customer().await;
    app.post(
        "/api/v1/cart/lines",
        Some(&user.token),
        json!({ "variant_id": sku.variant_id, "quantity": 1 }),
    )
    .await;
    let (status, problem, _) = checkout(&app, &user.token, None, json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("address_required"))
    );
    let other = app.customer().await;
    let foreign = app.address(&other, true).await;
    let (status, _, _) = checkout(
        &app,
        &user.token,
        None,
        json!({ "shipping_address_id": foreign }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's address does not exist for you"
    );
}

/// Staff may make exactly the moves of the state machine; everything else is 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_machine_is_enforced_from_every_state() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let sku = app.stocked_product(100, 1000).await;
    // A path from pending_payment to each state.
    let paths: &[(OrderStatus, &[OrderStatus])] = &[
        (OrderStatus::PendingPayment, &[]),
        (OrderStatus::Paid, &[OrderStatus::Paid]),
        (
            OrderStatus::Fulfilling,
            &[OrderStatus::Paid, OrderStatus::Fulfilling],
        ),
        (
            OrderStatus::Shipped,
            &[
                OrderStatus::Paid,
                OrderStatus::Fulfilling,
                OrderStatus::Shipped,
            ],
        ),
        (
            OrderStatus::Delivered,
            &[
                OrderStatus::Paid,
                OrderStatus::Fulfilling,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
            ],
        ),
        (OrderStatus::Cancelled, &[OrderStatus::Cancelled]),
        (
            OrderStatus::Refunded,
            &[OrderStatus::Paid, OrderStatus::Refunded],
        ),
    ];
    for (from, path) in paths {
        for to in OrderStatus::ALL {
            let user = app.shopper_with(sku.variant_id, 1).await;
            let (status, order, _) = checkout(&app, &user.token, None, json!({})).await;
            assert_eq!(status, StatusCode::CREATED);
            let url = format!("/api/v1/orders/{}/status", order["id"].as_str().unwrap());
            for step in *path {
                let (status, body) = app
                    .post(&url, Some(&staff.token), json!({ "status": step }))
                    .await;
                assert_eq!(status, StatusCode::OK, "{from} via {step}: {body}");
            }
            let (status, body) = app
                .post(
                    &url,
                    Some(&staff.token),
                    json!({ "status": to, "reason": "test" }),
                )
                .await;
            if from.can_become(to) {
                assert_eq!(status, StatusCode::OK, "{from} -> {to}: {body}");
                assert_eq!(body["status"], to.as_str());
            } else {
                assert_eq!(status, StatusCode::CONFLICT, "{from} -> {to}: {body}");
                assert_eq!(body["code"], "invalid_transition");
            }
            // A customer can never set a status.
            let (status, _) = app
                .post(&url, Some(&user.token), json!({ "status": to }))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }
    assert!(app.ledger_mismatches().await.is_empty());
    // Stock: a unit is gone for every order paid and not refunded before shipping (a
    // refund after delivery gives money back, not goods); only pending orders hold a
    // reservation.
    let (gone, reserved): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders o WHERE status IN ('paid', 'fulfilling', 'shipped', 'delivered')
                    OR (status = 'refunded' AND EXISTS (SELECT 1 FROM order_status_history h
                        WHERE h.order_id = o.id AND h.from_status = 'delivered' AND h.to_status = 'refunded'))),
                (SELECT count(*) FROM orders WHERE status = 'pending_payment')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(app.stock(&sku).await, (1000 - gone as i32, reserved as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_private_to_their_owner() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(100, 10).await;
    let owner = app.shopper_with(sku.variant_id, 1).await;
    let other = app.customer().await;
    let staff = app.staff().await;
    let (_, order, _) = checkout(&app, &owner.token, None, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/api/v1/orders/{id}");
    assert_eq!(
        app.get(&path, Some(&other.token)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, Some(&staff.token)).await.0, StatusCode::OK);
    assert_eq!(app.get(&path, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(&format!("{path}/cancel"), Some(&other.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = app.get("/api/v1/orders", Some(&other.token)).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(
        app.get("/api/v1/orders?all=true", Some(&other.token))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, page) = app.get("/api/v1/orders?all=true", Some(&staff.token)).await;
    assert_eq!(page["items"][0]["id"], id);
    let (_, page) = app
        .get(
            "/api/v1/orders?all=true&status=pending_payment",
            Some(&staff.token),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = app
        .get("/api/v1/orders?all=true&status=paid", Some(&staff.token))
        .await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(
        app.get("/api/v1/orders?status=lost", Some(&owner.token))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A paid order cannot be cancelled by its owner.
    app.call(
        Method::POST,
        &format!("{path}/status"),
        Some(&staff.token),
        Some(json!({ "status": "paid" })),
    )
    .await;
    let (status, body) = app
        .post(&format!("{path}/cancel"), Some(&owner.token), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_history_pages_by_cursor() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(100, 100).await;
    let user = app.shopper_with(sku.variant_id, 1).await;
    for _ in 0..5 {
        checkout(&app, &user.token, None, json!({})).await;
        app.post(
            "/api/v1/cart/lines",
            Some(&user.token),
            json!({ "variant_id": sku.variant_id, "quantity": 1 }),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orders?limit=2&cursor={c}"),
            None => "/api/v1/orders?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path, Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first (ids are time-ordered)");
    assert_eq!(
        app.get("/api/v1/orders?cursor=nonsense", Some(&user.token))
            .await
            .1["code"],
        "invalid_cursor"
    );
    assert_eq!(
        app.get("/api/v1/orders?limit=0", Some(&user.token)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
