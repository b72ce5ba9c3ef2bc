//! The cart: server-side totals, anonymous carts, limits and bad input.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::TestApp;

async fn with_cart_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("X-Cart-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_are_exact_and_shipping_is_waived_from_the_threshold() {
    let app = TestApp::spawn().await;
    let shirt = app.stocked_product(1999, 10).await;
    let socks = app.stocked_product(333, 10).await;
    let user = app.customer().await;
    let add = |variant_id: i64, quantity: i32| {
        app.post(
            "/api/v1/cart/lines",
            Some(&user.token),
            json!({ "variant_id": variant_id, "quantity": quantity }),
        )
    };
    let (status, cart) = add(shirt.variant_id, 2).await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    assert_eq!(
        cart["subtotal"],
        json!({ "amount_minor": 3998, "currency": "EUR" })
    );
    assert_eq!(cart["shipping"]["amount_minor"], 495);
    assert_eq!(cart["total"]["amount_minor"], 4493);
    // Adding to an existing line increases it.
    let (_, cart) = add(socks.variant_id, 3).await;
    let (_, cart2) = add(socks.variant_id, 1).await;
    assert_eq!(cart["item_count"], 5);
    assert_eq!(cart2["item_count"], 6);
    assert_eq!(cart2["lines"][1]["line_total"]["amount_minor"], 333 * 4);
    // 3998 + 1332 = 5330 >= 5000: free shipping.
    assert_eq!(cart2["subtotal"]["amount_minor"], 5330);
    assert_eq!(cart2["shipping"]["amount_minor"], 0);
    assert_eq!(cart2["total"]["amount_minor"], 5330);

    let path = format!("/api/v1/cart/lines/{}", socks.variant_id);
    let (status, cart) = app
        .call(
            Method::PUT,
            &path,
            Some(&user.token),
            Some(json!({ "quantity": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cart["subtotal"]["amount_minor"], 3998 + 333);
    let (status, cart) = app
        .call(Method::DELETE, &path, Some(&user.token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&user.token), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (status, _) = app
        .call(Method::DELETE, "/api/v1/cart", Some(&user.token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(
        cart["total"]["amount_minor"], 0,
        "an empty cart costs nothing, shipping included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_are_read_afresh() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(1000, 10).await;
    let user = app.customer().await;
    app.post(
        "/api/v1/cart/lines",
        Some(&user.token),
        json!({ "variant_id": sku.variant_id, "quantity": 1 }),
    )
    .await;
    sqlx::query("UPDATE variants SET price_minor = 1200 WHERE id = $1")
        .bind(sku.variant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(cart["subtotal"]["amount_minor"], 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_carts_work_with_their_token_only() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(500, 10).await;
    let (status, created) = app.post("/api/v1/cart/anonymous", None, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = created["cart_token"].as_str().unwrap();
    let body = json!({ "variant_id": sku.variant_id, "quantity": 2 });
    let (status, cart) = with_cart_token(
        &app,
        Method::POST,
        "/api/v1/cart/lines",
        token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    assert_eq!(cart["item_count"], 2);
    let (_, cart) = with_cart_token(&app, Method::GET, "/api/v1/cart", token, None).await;
    assert_eq!(cart["item_count"], 2);
    // Only the hash is stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM carts WHERE token_hash = $1")
        .bind(shop::auth::token::hash_token(token))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    // A wrong token names no cart; no token and no user is 401.
    let (status, _) = with_cart_token(&app, Method::GET, "/api/v1/cart", "not-a-cart", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = app.get("/api/v1/cart", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    // The anonymous cart cannot check out.
    let (status, _) = with_cart_token(
        &app,
        Method::POST,
        "/api/v1/checkout",
        token,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_refused() {
    let app = TestApp::spawn().await;
    let sku = app.stocked_product(500, 10).await;
    let user = app.customer().await;
    let add = |body: Value| app.post("/api/v1/cart/lines", Some(&user.token), body);
    for (body, pointer) in [
        (
            json!({ "variant_id": sku.variant_id, "quantity": 0 }),
            "/quantity",
        ),
        (
            json!({ "variant_id": sku.variant_id, "quantity": 1001 }),
            "/quantity",
        ),
        (
            json!({ "variant_id": 987654321, "quantity": 1 }),
            "/variant_id",
        ),
    ] {
        let (status, problem) = add(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], pointer, "{problem}");
    }
    let (status, _) = add(json!({ "variant_id": sku.variant_id, "quantity": "two" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = add(json!({ "variant_id": sku.variant_id, "quantity": 1, "price": 1 })).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a client cannot set a price"
    );
    // 1000 units per line at most, across adds.
    assert_eq!(
        add(json!({ "variant_id": sku.variant_id, "quantity": 600 }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        add(json!({ "variant_id": sku.variant_id, "quantity": 600 }))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // An archived product cannot be added.
    sqlx::query("UPDATE products SET status = 'archived' WHERE id = $1")
        .bind(sku.product_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let other = app.customer().await;
    let (status, _) = app
        .post(
            "/api/v1/cart/lines",
            Some(&other.token),
            json!({ "variant_id": sku.variant_id, "quantity": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_holds_at_most_a_hundred_lines() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let cart: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO carts (id, user_id) VALUES (gen_random_uuid(), $1) RETURNING id",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for _ in 0..100 {
        let sku = app.stocked_product(100, 1).await;
        sqlx::query("INSERT INTO cart_lines (cart_id, variant_id, quantity) VALUES ($1, $2, 1)")
            .bind(cart)
            .bind(sku.variant_id)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let extra = app.stocked_product(100, 1).await;
    let (status, problem) = app
        .post(
            "/api/v1/cart/lines",
            Some(&user.token),
            json!({ "variant_id": extra.variant_id, "quantity": 1 }),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("cart_full"))
    );
}

/// Signing in moves an anonymous cart into the user's (the auth tests cover the login side):
/// quantities of a variant in both add up to at most 1000, and the anonymous cart is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_cart_merges_into_the_users() {
    let app = TestApp::spawn().await;
    let both = app.stocked_product(100, 10).await;
    let capped = app.stocked_product(200, 10).await;
    let anonymous_only = app.stocked_product(300, 10).await;
    let user = app.customer().await;
    let (_, created) = app.post("/api/v1/cart/anonymous", None, json!({})).await;
    let token = created["cart_token"].as_str().unwrap();
    for (variant_id, quantity) in [
        (both.variant_id, 2),
        (capped.variant_id, 999),
        (anonymous_only.variant_id, 1),
    ] {
        let body = json!({ "variant_id": variant_id, "quantity": quantity });
        let (status, cart) =
            with_cart_token(&app, Method::POST, "/api/v1/cart/lines", token, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{cart}");
    }
    for (variant_id, quantity) in [(both.variant_id, 3), (capped.variant_id, 5)] {
        let body = json!({ "variant_id": variant_id, "quantity": quantity });
        assert_eq!(
            app.post("/api/v1/cart/lines", Some(&user.token), body)
                .await
                .0,
            StatusCode::OK
        );
    }

    let mut conn = app.pool.acquire().await.unwrap();
    shop::cart::merge::merge_into_user(&mut conn, token, user.id)
        .await
        .unwrap();
    // A token that names no cart (already merged, or expired) is ignored.
    shop::cart::merge::merge_into_user(&mut conn, token, user.id)
        .await
        .unwrap();
    drop(conn);

    let (status, cart) = app.get("/api/v1/cart", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    let quantity = |variant_id: i64| {
        cart["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["variant_id"] == variant_id)
            .map(|l| l["quantity"].clone())
    };
    assert_eq!(quantity(both.variant_id), Some(json!(5)));
    assert_eq!(quantity(capped.variant_id), Some(json!(1000)));
    assert_eq!(quantity(anonymous_only.variant_id), Some(json!(1)));
    assert_eq!(cart["subtotal"]["amount_minor"], 5 * 100 + 1000 * 200 + 300);
    assert_eq!(cart["shipping"]["amount_minor"], 0);
    let (status, _) = with_cart_token(&app, Method::GET, "/api/v1/cart", token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the anonymous cart is gone");
    let carts: i64 = sqlx::query_scalar("SELECT count(*) FROM carts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(carts, 1);
}
