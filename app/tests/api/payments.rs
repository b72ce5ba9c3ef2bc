//! Tests of the payments domain: stored cards, paying and refunding orders, the webhook.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use shop::{
    money::Money,
    payments::{
        gateway::{
            CardDetails, ChargeOutcome, GatewayError, PaymentGateway, TestGateway, Tokenized,
        },
        webhook::{sign, verify, SignatureError},
    },
};
use uuid::Uuid;

use crate::harness::{Stocked, TestApp, User, WEBHOOK_SECRET};

const GOOD: &str = "4242424242424242";
const DECLINED: &str = "4000000000000002";
const NO_FUNDS: &str = "4000000000009995";
const UNAVAILABLE: &str = "4000000000000119";

/// The test gateway, recording the idempotency key of every charge it is asked for, and
/// slow enough that concurrent requests overlap.
#[derive(Default)]
struct RecordingGateway {
    charges: Mutex<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl PaymentGateway for RecordingGateway {
    fn name(&self) -> &'static str {
        "test"
    }
    async fn tokenize(&self, card: &CardDetails) -> Result<Tokenized, GatewayError> {
        TestGateway.tokenize(card).await
    }
    async fn charge(
        &self,
        token: &str,
        amount: Money,
        key: Uuid,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.charges.lock().unwrap().push(key);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        TestGateway.charge(token, amount, key).await
    }
    async fn refund(&self, reference: &str, amount: Money, key: Uuid) -> Result<(), GatewayError> {
        TestGateway.refund(reference, amount, key).await
    }
}

/// Like `TestApp::spawn`, with `gateway` in place of the test gateway.
pub(crate) async fn spawn_with_gateway(gateway: Arc<dyn PaymentGateway>) -> TestApp {
    TestApp::spawn_with_state(|_| {}, |state| state.gateway = gateway).await
}

pub(crate) fn card(number: &str) -> Value {
    json!({ "card": { "number": number, "exp_month": 12, "exp_year": 2099, "cvc": "987" } })
}

/// Stores a card for `user`; returns its id.
pub(crate) async fn add_card(app: &TestApp, user: &User, number: &str) -> Uuid {
    let (status, body) = app
        .post("/api/v1/payment-methods", Some(&user.token), card(number))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// An order of `quantity` units awaiting payment, made directly in the database the way
/// checkout makes it: the units are reserved through the ledger in the same transaction.
pub(crate) async fn pending_order(
    app: &TestApp,
    user: &User,
    product: Stocked,
    unit_price: i64,
    quantity: i32,
) -> Uuid {
    let id = Uuid::now_v7();
    let total = unit_price * i64::from(quantity);
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, currency, subtotal_minor, shipping_minor, total_minor,
                             shipping_address, billing_address)
         VALUES ($1, $2, 'pending_payment', 'EUR', $3, 0, $3, '{}', '{}')",
    )
    .bind(id)
    .bind(user.id)
    .bind(total)
    .execute(&mut *tx)
    .await
    .unwrap();
    let allocations = shop::inventory::ledger::reserve(&mut tx, id, product.variant_id, quantity)
        .await
        .unwrap();
    for a in allocations {
        sqlx::query(
            "INSERT INTO order_items (order_id, variant_id, warehouse_id, sku, name, unit_price_minor, quantity,
                                      line_total_minor)
             VALUES ($1, $2, $3, 'SKU', 'Test product', $4, $5, $6)",
        )
        .bind(id)
        .bind(a.variant_id)
        .bind(a.warehouse_id)
        .bind(unit_price)
        .bind(a.quantity)
        .bind(unit_price * i64::from(a.quantity))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    id
}

/// (on_hand, reserved) of the product's stock row.
async fn stock(app: &TestApp, product: Stocked) -> (i32, i32) {
    app.stock(&product).await
}

pub(crate) async fn order_status(app: &TestApp, order: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A count over what the order's events lead to, once they are applied.
async fn count(app: &TestApp, sql: &str, order: Uuid) -> i64 {
    app.settle().await;
    sqlx::query_scalar(sql)
        .bind(order)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn movements(app: &TestApp, order: Uuid, kind: &str) -> i64 {
    app.settle().await;
    sqlx::query_scalar("SELECT count(*) FROM inventory_movements WHERE order_id = $1 AND kind = $2")
        .bind(order)
        .bind(kind)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

pub(crate) async fn pay(
    app: &TestApp,
    user: &User,
    order: Uuid,
    method: Uuid,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/orders/{order}/pay"),
        Some(&user.token),
        json!({ "payment_method_id": method }),
    )
    .await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Posts raw bytes to the webhook with an optional signature header; returns status and body.
async fn deliver(app: &TestApp, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("Shop-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn deliver_signed(app: &TestApp, event: &Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(event).unwrap();
    deliver(
        app,
        &body,
        Some(sign(WEBHOOK_SECRET.as_bytes(), now(), &body)),
    )
    .await
}

/// A payment the gateway has not settled yet, recorded directly.
async fn pending_payment(app: &TestApp, order: Uuid, reference: &str, amount: i64) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payments (id, order_id, gateway, gateway_reference, amount_minor, currency, status)
         VALUES ($1, $2, 'test', $3, $4, 'EUR', 'pending')",
    )
    .bind(id)
    .bind(order)
    .bind(reference)
    .bind(amount)
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_stored_as_gateway_tokens_only() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (status, created) = app
        .post("/api/v1/payment-methods", Some(&user.token), card(GOOD))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["brand"], "visa");
    assert_eq!(created["last4"], "4242");
    assert_eq!(
        (created["exp_month"].as_i64(), created["exp_year"].as_i64()),
        (Some(12), Some(2099))
    );
    assert!(created["created_at"].is_string());
    let (status, listed) = app.get("/api/v1/payment-methods", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], created["id"]);

    // Neither the responses nor any stored row holds the number.
    for body in [&created, &listed] {
        assert!(!body.to_string().contains(GOOD), "{body}");
        assert!(body.get("cvc").is_none() && body[0].get("cvc").is_none());
    }
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(pm)::text FROM payment_methods pm
         UNION ALL SELECT row_to_json(p)::text FROM payments p
         UNION ALL SELECT row_to_json(e)::text FROM job_outbox e",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        assert!(!row.contains(GOOD) && !row.contains("42424242"), "{row}");
    }
    // There is nowhere to put a CVC.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'payment_methods' ORDER BY ordinal_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        columns,
        [
            "id",
            "user_id",
            "gateway",
            "gateway_token",
            "brand",
            "last4",
            "exp_month",
            "exp_year",
            "created_at"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cards_are_refused_with_a_pointer_and_never_echoed() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let cases = [
        (
            json!({ "number": "4242424242424241", "exp_month": 12, "exp_year": 2099, "cvc": "987" }),
            "/card/number",
        ),
        (
            json!({ "number": "4242", "exp_month": 12, "exp_year": 2099, "cvc": "987" }),
            "/card/number",
        ),
        (
            json!({ "number": GOOD, "exp_month": 13, "exp_year": 2099, "cvc": "987" }),
            "/card/exp_month",
        ),
        (
            json!({ "number": GOOD, "exp_month": 1, "exp_year": 2001, "cvc": "987" }),
            "/card/exp_year",
        ),
        (
            json!({ "number": GOOD, "exp_month": 12, "exp_year": 2099, "cvc": "98" }),
            "/card/cvc",
        ),
    ];
    for (card, field) in cases {
        let (status, body) = app
            .post(
                "/api/v1/payment-methods",
                Some(&user.token),
                json!({ "card": card }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "invalid_card", "{body}");
        assert_eq!(body["type"], "/problems/invalid_card");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        assert!(
            !body.to_string().contains("4242424242424241") && !body.to_string().contains(GOOD),
            "{body}"
        );
    }
    // A number sent as a JSON number is refused without quoting it.
    let (status, body) = app
        .post(
            "/api/v1/payment-methods",
            Some(&user.token),
            json!({ "card": { "number": 4242424242424242u64, "exp_month": 12, "exp_year": 2099, "cvc": 987 } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        !body.to_string().contains(GOOD) && !body.to_string().contains("987"),
        "{body}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_methods")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    let (status, body) = app.post("/api/v1/payment-methods", None, card(GOOD)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert_eq!(
        app.get("/api/v1/payment-methods", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_private_to_their_owner() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.customer().await, app.customer().await);
    let alices = add_card(&app, &alice, GOOD).await;
    let (_, listed) = app.get("/api/v1/payment-methods", Some(&bob.token)).await;
    assert_eq!(listed, json!([]));
    let path = format!("/api/v1/payment-methods/{alices}");
    let (status, body) = app
        .call(Method::DELETE, &path, Some(&bob.token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        app.call(Method::DELETE, &path, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = app
        .call(
            Method::DELETE,
            "/api/v1/payment-methods/not-a-uuid",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_eq!(
        app.call(Method::DELETE, &path, Some(&alice.token), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/payment-methods", Some(&alice.token))
            .await
            .1,
        json!([])
    );
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&alice.token), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_used_card_keeps_its_payments() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(1500, 5).await;
    let order = pending_order(&app, &user, product, 1500, 1).await;
    let method = add_card(&app, &user, GOOD).await;
    assert_eq!(pay(&app, &user, order, method).await.0, StatusCode::OK);
    let path = format!("/api/v1/payment-methods/{method}");
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&user.token), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, payments) = app
        .get(
            &format!("/api/v1/orders/{order}/payments"),
            Some(&user.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(payments[0]["payment_method_id"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_commits_the_stock_and_queues_the_confirmation() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(1250, 10).await;
    let order = pending_order(&app, &user, product, 1250, 3).await;
    assert_eq!(stock(&app, product).await, (10, 3));
    let method = add_card(&app, &user, GOOD).await;

    let (status, body) = pay(&app, &user, order, method).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order_status"], "paid");
    let payment = &body["payment"];
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["order_id"], order.to_string());
    assert_eq!(
        payment["amount"],
        json!({ "amount_minor": 3750, "currency": "EUR" })
    );
    assert_eq!(payment["payment_method_id"], method.to_string());
    assert!(
        payment["gateway_reference"]
            .as_str()
            .unwrap()
            .starts_with("ch_test_"),
        "{payment}"
    );
    assert_eq!(payment["failure_code"], Value::Null);

    assert_eq!(order_status(&app, order).await, "paid");
    let (succeeded, amount): (i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(amount_minor)::bigint FROM payments WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((succeeded, amount), (1, 3750));
    // Stock left the warehouse: on hand and reserved both dropped, through the ledger.
    assert_eq!(stock(&app, product).await, (7, 0));
    assert_eq!(movements(&app, order, "commit").await, 1);
    let (delta_on_hand, delta_reserved): (i32, i32) = sqlx::query_as(
        "SELECT on_hand_delta, reserved_delta FROM inventory_movements WHERE order_id = $1 AND kind = 'commit'",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((delta_on_hand, delta_reserved), (-3, -3));
    let history: (String, String, Option<Uuid>) = sqlx::query_as(
        "SELECT from_status, to_status, actor_id FROM order_status_history WHERE order_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        ("pending_payment".into(), "paid".into(), Some(user.id))
    );

    app.settle().await;
    let (recipient, template, payload): (String, String, Value) = sqlx::query_as(
        "SELECT payload->>'recipient', payload->>'template', payload->'data' FROM job_outbox
         WHERE payload->>'template' = 'payment_receipt'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (recipient.as_str(), template.as_str()),
        (user.email.as_str(), "payment_receipt")
    );
    assert_eq!(
        payload,
        json!({ "order_id": order, "payment_id": body["payment"]["id"], "total": { "amount_minor": 3750, "currency": "EUR" } })
    );

    let (status, listed) = app
        .get(
            &format!("/api/v1/orders/{order}/payments"),
            Some(&user.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], payment["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_leaves_the_order_pending_and_the_stock_reserved() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(999, 4).await;
    let order = pending_order(&app, &user, product, 999, 2).await;
    let declined = add_card(&app, &user, DECLINED).await;

    for _ in 0..2 {
        let (status, body) = pay(&app, &user, order, declined).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        assert_eq!(body["code"], "payment_declined");
        assert!(
            body["detail"].as_str().unwrap().contains("card_declined"),
            "{body}"
        );
    }
    assert_eq!(order_status(&app, order).await, "pending_payment");
    assert_eq!(stock(&app, product).await, (4, 2));
    assert_eq!(movements(&app, order, "commit").await, 0);
    // The retry with the same card is the same charge at the gateway: one failed row.
    let (status, listed) = app
        .get(
            &format!("/api/v1/orders/{order}/payments"),
            Some(&user.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (
            listed[0]["status"].as_str(),
            listed[0]["failure_code"].as_str()
        ),
        (Some("failed"), Some("card_declined"))
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE payload->>'template' = 'payment_receipt' AND payload->'data'->>'order_id' = $1::text",
            order
        )
        .await,
        0
    );

    let no_funds = add_card(&app, &user, NO_FUNDS).await;
    let (status, body) = pay(&app, &user, order, no_funds).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds"),
        "{body}"
    );

    // Another card can still pay the order.
    let good = add_card(&app, &user, GOOD).await;
    let (status, body) = pay(&app, &user, order, good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stock(&app, product).await, (2, 0));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM payments WHERE order_id = $1",
            order
        )
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outage_is_503_with_retry_after_and_records_nothing() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(500, 2).await;
    let order = pending_order(&app, &user, product, 500, 1).await;
    let method = add_card(&app, &user, UNAVAILABLE).await;

    let response = app
        .client
        .post(app.url(&format!("/api/v1/orders/{order}/pay")))
        .bearer_auth(&user.token)
        .json(&json!({ "payment_method_id": method }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "gateway_unavailable");

    assert_eq!(order_status(&app, order).await, "pending_payment");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM payments WHERE order_id = $1",
            order
        )
        .await,
        0
    );
    assert_eq!(stock(&app, product).await, (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pays_of_one_order_charge_once() {
    let gateway = Arc::new(RecordingGateway::default());
    let app = spawn_with_gateway(gateway.clone()).await;
    let user = app.customer().await;
    let product = app.stocked_product(2000, 10).await;
    let order = pending_order(&app, &user, product, 2000, 2).await;
    let (first, second) = (
        add_card(&app, &user, GOOD).await,
        add_card(&app, &user, "5555555555554444").await,
    );

    let attempts = (0..6).map(|i| pay(&app, &user, order, if i % 2 == 0 { first } else { second }));
    let results = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = results.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{results:?}"
    );
    for (status, body) in &results {
        if *status != StatusCode::OK {
            assert_eq!(
                (*status, body["code"].as_str()),
                (StatusCode::CONFLICT, Some("order_not_payable"))
            );
        }
    }
    assert_eq!(
        gateway.charges.lock().unwrap().len(),
        1,
        "the gateway charged more than once"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM payments WHERE order_id = $1",
            order
        )
        .await,
        1
    );
    assert_eq!(movements(&app, order, "commit").await, 1);
    assert_eq!(stock(&app, product).await, (8, 0));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE payload->>'template' = 'payment_receipt' AND payload->'data'->>'order_id' = $1::text",
            order
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_charges_reuse_their_idempotency_key() {
    let gateway = Arc::new(RecordingGateway::default());
    let app = spawn_with_gateway(gateway.clone()).await;
    let user = app.customer().await;
    let product = app.stocked_product(100, 5).await;
    let (first, second) = (
        pending_order(&app, &user, product, 100, 1).await,
        pending_order(&app, &user, product, 100, 1).await,
    );
    let (declined, good) = (
        add_card(&app, &user, DECLINED).await,
        add_card(&app, &user, GOOD).await,
    );

    assert_eq!(
        pay(&app, &user, first, declined).await.0,
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(
        pay(&app, &user, first, declined).await.0,
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(pay(&app, &user, first, good).await.0, StatusCode::OK);
    assert_eq!(pay(&app, &user, second, good).await.0, StatusCode::OK);
    let keys = gateway.charges.lock().unwrap().clone();
    assert_eq!(keys.len(), 4);
    assert_eq!(
        keys[0], keys[1],
        "a retry with the same card must repeat the charge"
    );
    assert_ne!(keys[1], keys[2], "another card is another charge");
    assert_ne!(keys[2], keys[3], "another order is another charge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_orders_awaiting_payment_can_be_paid() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(100, 5).await;
    let method = add_card(&app, &user, GOOD).await;

    let paid = pending_order(&app, &user, product, 100, 1).await;
    assert_eq!(pay(&app, &user, paid, method).await.0, StatusCode::OK);
    let (status, body) = pay(&app, &user, paid, method).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_payable"))
    );

    let cancelled = pending_order(&app, &user, product, 100, 1).await;
    sqlx::query("UPDATE orders SET status = 'cancelled' WHERE id = $1")
        .bind(cancelled)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, body) = pay(&app, &user, cancelled, method).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_payable"))
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM payments WHERE order_id = $1",
            cancelled
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_cards_of_others_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let (alice, bob, staff) = (
        app.customer().await,
        app.customer().await,
        app.staff().await,
    );
    let product = app.stocked_product(100, 5).await;
    let order = pending_order(&app, &alice, product, 100, 1).await;
    let alices = add_card(&app, &alice, GOOD).await;
    let bobs = add_card(&app, &bob, GOOD).await;

    let (status, body) = pay(&app, &bob, order, bobs).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = pay(&app, &alice, order, bobs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "/payment_method_id");
    let (status, _) = pay(&app, &alice, Uuid::now_v7(), alices).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{order}/pay"),
            None,
            Some(json!({ "payment_method_id": alices })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{order}/pay"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(order_status(&app, order).await, "pending_payment");

    let payments = format!("/api/v1/orders/{order}/payments");
    assert_eq!(
        app.get(&payments, Some(&bob.token)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&payments, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&payments, Some(&staff.token)).await,
        (StatusCode::OK, json!([]))
    );
    assert_eq!(
        app.get("/api/v1/orders/nope/payments", Some(&alice.token))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_refunds_put_the_stock_back() {
    let app = TestApp::spawn().await;
    let (user, staff) = (app.customer().await, app.staff().await);
    let product = app.stocked_product(700, 6).await;
    let order = pending_order(&app, &user, product, 700, 2).await;
    let refund = format!("/api/v1/orders/{order}/refund");

    // Not paid yet.
    let (status, body) = app
        .call(Method::POST, &refund, Some(&staff.token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_refundable"))
    );

    let method = add_card(&app, &user, GOOD).await;
    assert_eq!(pay(&app, &user, order, method).await.0, StatusCode::OK);
    assert_eq!(stock(&app, product).await, (4, 0));

    let (status, body) = app
        .call(Method::POST, &refund, Some(&user.token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(
        app.call(Method::POST, &refund, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let missing = format!("/api/v1/orders/{}/refund", Uuid::now_v7());
    assert_eq!(
        app.call(Method::POST, &missing, Some(&staff.token), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (status, body) = app
        .call(Method::POST, &refund, Some(&staff.token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["order_status"], "refunded");
    assert_eq!(body["payment"]["status"], "refunded");
    assert_eq!(order_status(&app, order).await, "refunded");
    assert_eq!(stock(&app, product).await, (6, 0));
    assert_eq!(movements(&app, order, "restock").await, 1);
    let actor: Option<Uuid> = sqlx::query_scalar(
        "SELECT actor_id FROM order_status_history WHERE order_id = $1 AND to_status = 'refunded'",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, Some(staff.id));

    let (status, body) = app
        .call(Method::POST, &refund, Some(&staff.token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_refundable"))
    );
    assert_eq!(stock(&app, product).await, (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_settles_a_pending_payment_once() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(1000, 3).await;
    let order = pending_order(&app, &user, product, 1000, 1).await;
    let payment = pending_payment(&app, order, "ch_ext_1", 1000).await;
    let event = json!({
        "id": "evt_1",
        "type": "payment.succeeded",
        "data": { "gateway_reference": "ch_ext_1", "amount_minor": 1000 }
    });

    let (status, body) = deliver_signed(&app, &event).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "status": "processed" }))
    );
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
    assert_eq!(order_status(&app, order).await, "paid");
    assert_eq!(stock(&app, product).await, (2, 0));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE payload->>'template' = 'payment_receipt' AND payload->'data'->>'order_id' = $1::text",
            order
        )
        .await,
        1
    );

    // A redelivery (freshly signed, same event id) changes nothing.
    let (status, body) = deliver_signed(&app, &event).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "status": "duplicate" }))
    );
    assert_eq!(movements(&app, order, "commit").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE payload->>'template' = 'payment_receipt' AND payload->'data'->>'order_id' = $1::text",
            order
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM order_status_history WHERE order_id = $1",
            order
        )
        .await,
        1
    );
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE event_id = 'evt_1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(recorded, 1);

    // A new event about the same, already settled charge has nothing left to do.
    let again = json!({ "id": "evt_2", "type": "payment.succeeded", "data": { "gateway_reference": "ch_ext_1" } });
    assert_eq!(
        deliver_signed(&app, &again).await.1,
        json!({ "status": "ignored" })
    );
    assert_eq!(movements(&app, order, "commit").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_refunds_and_unknown_events() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(300, 5).await;

    // payment.failed: the pending payment fails, the order keeps waiting.
    let order = pending_order(&app, &user, product, 300, 1).await;
    let payment = pending_payment(&app, order, "ch_ext_fail", 300).await;
    let failed = json!({
        "id": "evt_f", "type": "payment.failed",
        "data": { "gateway_reference": "ch_ext_fail", "failure_code": "expired_card" }
    });
    assert_eq!(
        deliver_signed(&app, &failed).await,
        (StatusCode::OK, json!({ "status": "processed" }))
    );
    let row: (String, Option<String>) =
        sqlx::query_as("SELECT status, failure_code FROM payments WHERE id = $1")
            .bind(payment)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(row, ("failed".into(), Some("expired_card".into())));
    assert_eq!(order_status(&app, order).await, "pending_payment");

    // payment.refunded: a paid order is refunded and its stock comes back.
    let method = add_card(&app, &user, GOOD).await;
    let (status, body) = pay(&app, &user, order, method).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stock(&app, product).await, (4, 0));
    let reference = body["payment"]["gateway_reference"].as_str().unwrap();
    let refunded = json!({ "id": "evt_r", "type": "payment.refunded", "data": { "gateway_reference": reference } });
    assert_eq!(
        deliver_signed(&app, &refunded).await,
        (StatusCode::OK, json!({ "status": "processed" }))
    );
    assert_eq!(order_status(&app, order).await, "refunded");
    assert_eq!(stock(&app, product).await, (5, 0));

    // Unknown references and types are recorded and ignored.
    let unknown = json!({ "id": "evt_u", "type": "payment.succeeded", "data": { "gateway_reference": "ch_nobody" } });
    assert_eq!(
        deliver_signed(&app, &unknown).await,
        (StatusCode::OK, json!({ "status": "ignored" }))
    );
    let other = json!({ "id": "evt_o", "type": "charge.disputed", "data": { "gateway_reference": reference } });
    assert_eq!(
        deliver_signed(&app, &other).await,
        (StatusCode::OK, json!({ "status": "ignored" }))
    );
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM webhook_events ORDER BY received_at, event_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 4);
    assert!(recorded.contains(&"evt_u".to_owned()) && recorded.contains(&"evt_o".to_owned()));

    // Signed but not an event.
    let body = br#"{"hello":"world"}"#;
    let (status, problem) = deliver(
        &app,
        body,
        Some(sign(WEBHOOK_SECRET.as_bytes(), now(), body)),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_event"))
    );
    // NUL characters, which PostgreSQL cannot store, are refused rather than failing.
    for event in [
        json!({ "id": "evt_\u{0}", "type": "payment.failed", "data": { "gateway_reference": "x" } }),
        json!({ "id": "evt_n", "type": "payment.failed", "data": { "gateway_reference": "x", "note": "\u{0}" } }),
    ] {
        let (status, problem) = deliver_signed(&app, &event).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["code"], "invalid_event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_are_enforced() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(1000, 3).await;
    let order = pending_order(&app, &user, product, 1000, 1).await;
    pending_payment(&app, order, "ch_ext_sig", 1000).await;
    let body = serde_json::to_vec(&json!({
        "id": "evt_sig", "type": "payment.succeeded", "data": { "gateway_reference": "ch_ext_sig" }
    }))
    .unwrap();
    let secret = WEBHOOK_SECRET.as_bytes();
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'e').unwrap();
    tampered[at] = b'f';

    let cases: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        ("missing", body.clone(), None, "invalid_signature"),
        (
            "garbage",
            body.clone(),
            Some("nonsense".into()),
            "invalid_signature",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(sign(b"another-secret-of-some-length", now(), &body)),
            "invalid_signature",
        ),
        (
            "tampered body",
            tampered.clone(),
            Some(sign(secret, now(), &body)),
            "invalid_signature",
        ),
        (
            "stale",
            body.clone(),
            Some(sign(secret, now() - 400, &body)),
            "stale_signature",
        ),
        (
            "from the future",
            body.clone(),
            Some(sign(secret, now() + 400, &body)),
            "stale_signature",
        ),
    ];
    for (case, bytes, signature, code) in cases {
        let (status, problem) = deliver(&app, &bytes, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {problem}");
        assert_eq!(problem["code"], code, "{case}: {problem}");
        assert_eq!(problem["type"], format!("/problems/{code}"));
    }
    // A timestamp changed after signing does not verify either.
    let signature = sign(secret, now(), &body).replacen("t=", "t=1", 1);
    assert_eq!(
        deliver(&app, &body, Some(signature)).await.1["code"],
        "invalid_signature"
    );

    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    assert_eq!(order_status(&app, order).await, "pending_payment");

    // The genuine delivery still works, and the header name is case-insensitive.
    let response = app
        .client
        .post(app.url("/api/v1/payments/webhook"))
        .header("shop-signature", sign(secret, now(), &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(order_status(&app, order).await, "paid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signatures_verify_and_any_changed_byte_is_refused(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        timestamp in 1_000_000_000i64..4_000_000_000,
        index in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let secret = WEBHOOK_SECRET.as_bytes();
        let header = sign(secret, timestamp, &body);
        prop_assert_eq!(verify(secret, &header, &body, timestamp, 300), Ok(()));
        prop_assert_eq!(verify(secret, &header, &body, timestamp + 300, 300), Ok(()));
        prop_assert_eq!(verify(secret, &header, &body, timestamp + 301, 300), Err(SignatureError::Stale));
        prop_assert_eq!(verify(b"some-other-secret", &header, &body, timestamp, 300), Err(SignatureError::Mismatch));
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[index.index(body.len())] ^= flip;
            prop_assert_eq!(verify(secret, &header, &changed, timestamp, 300), Err(SignatureError::Mismatch));
        }
        let mut longer = body.clone();
        longer.push(flip);
        prop_assert_eq!(verify(secret, &header, &longer, timestamp, 300), Err(SignatureError::Mismatch));
    }
}
