//! Order events: the outbox, the relay to a real Kafka-protocol broker, and the four
//! consumers applying each event exactly once, across duplicates and broker restarts.

use std::time::{Duration, Instant};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig, Message,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    harness::{Stocked, TestApp, User},
    kafka::Broker,
    worker_process::{events_settings, WorkerProcess},
};

const GOOD_CARD: &str = "4242424242424242";

/// A customer's paid order of `quantity` units of `product`, placed and paid through the API.
async fn paid_order(app: &TestApp, product: &Stocked, quantity: i32) -> (User, Uuid) {
    let user = app.shopper_with(product.variant_id, quantity).await;
    let (status, order) = app
        .post("/api/v1/checkout", Some(&user.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let order: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let card =
        json!({ "card": { "number": GOOD_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123" } });
    let (status, method) = app
        .post("/api/v1/payment-methods", Some(&user.token), card)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{method}");
    let (status, paid) = app
        .post(
            &format!("/api/v1/orders/{order}/pay"),
            Some(&user.token),
            json!({ "payment_method_id": method["id"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    (user, order)
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// What the consumers did, as one comparable value.
async fn effects(app: &TestApp) -> Value {
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM inventory_movements WHERE kind = 'commit'),
                (SELECT count(*) FROM job_outbox WHERE payload->>'template' = 'order_confirmation'),
                (SELECT count(*) FROM warehouse_requests),
                (SELECT coalesce(sum(orders), 0)::bigint FROM sales_daily),
                (SELECT coalesce(sum(revenue_minor), 0)::bigint FROM sales_daily),
                (SELECT count(*) FROM processed_events)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    json!({ "commits": row.0, "emails": row.1, "warehouse_requests": row.2,
            "sales": row.3, "revenue": row.4, "processed": row.5 })
}

/// Every record of the app's topic, read from the beginning: (key, payload).
fn topic_records(app: &TestApp, expected: usize) -> Vec<(String, Value)> {
    let events = &app.state.config.events;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", events.brokers.as_deref().unwrap())
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&events.topic]).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.len() < expected && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let payload = serde_json::from_slice(message.payload().unwrap()).unwrap();
            records.push((key, payload));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_reaches_every_consumer_once() {
    let app = TestApp::spawn().await;
    let product = app.stocked_product(1250, 10).await;
    let (user, order) = paid_order(&app, &product, 2).await;

    // Written with the changes, published after them.
    let events: Vec<(i32, String, Value)> = sqlx::query_as(
        "SELECT order_seq, type, payload FROM order_events WHERE order_id = $1 ORDER BY order_seq",
    )
    .bind(order)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["order.created", "order.paid"]);
    let created = &events[0].2;
    assert_eq!(created["version"], 1);
    assert_eq!(created["sequence"], 1);
    assert_eq!(created["user_id"], json!(user.id));
    assert_eq!(created["status"], "pending_payment");
    // 2 × 12.50 plus 4.95 shipping.
    assert_eq!(
        created["total"],
        json!({ "amount_minor": 2995, "currency": "EUR" })
    );
    assert_eq!(created["items"][0]["quantity"], 2);
    assert_eq!(events[1].2["previous_status"], "pending_payment");

    app.settle().await;
    assert_eq!(
        app.stock(&product).await,
        (8, 0),
        "the reservation was committed"
    );
    assert_eq!(
        effects(&app).await,
        json!({ "commits": 1, "emails": 1, "warehouse_requests": 1, "sales": 1, "revenue": 2995,
                "processed": 8 })
    );
    assert!(app.ledger_mismatches().await.is_empty());

    // On the topic: keyed by order id, in order, exactly as the outbox holds them.
    let records = topic_records(&app, 2);
    assert_eq!(records.len(), 2);
    for ((key, payload), (_, _, stored)) in records.iter().zip(&events) {
        assert_eq!(key, &order.to_string());
        assert_eq!(payload, stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_change_nothing() {
    let app = TestApp::spawn().await;
    let product = app.stocked_product(999, 10).await;
    paid_order(&app, &product, 3).await;
    app.settle().await;
    let before = effects(&app).await;

    // As if the relay crashed after publishing and before marking: everything again.
    sqlx::query("UPDATE order_events SET published_at = NULL")
        .execute(&app.pool)
        .await
        .unwrap();
    app.settle().await;
    let records = topic_records(&app, 4);
    assert_eq!(records.len(), 4, "each event was published twice");
    // Give the consumers time to read the duplicates, then compare.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(effects(&app).await, before);
    assert_eq!(app.stock(&product).await, (7, 0));
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_refunded_orders_give_their_stock_back() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let product = app.stocked_product(500, 10).await;

    // Cancelled before payment: the reservation is released.
    let user = app.shopper_with(product.variant_id, 4).await;
    let (_, order) = app
        .post("/api/v1/checkout", Some(&user.token), json!({}))
        .await;
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", order["id"].as_str().unwrap()),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stock(&product).await, (10, 0));

    // Paid, then refunded before shipping: committed, then back on hand.
    let (_, paid) = paid_order(&app, &product, 3).await;
    assert_eq!(app.stock(&product).await, (7, 0));
    let (status, body) = app
        .post(
            &format!("/api/v1/orders/{paid}/refund"),
            Some(&staff.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stock(&product).await, (10, 0));
    let cancelled_requests = scalar(
        &app,
        "SELECT count(*) FROM warehouse_requests WHERE cancelled_at IS NOT NULL",
    )
    .await;
    assert_eq!(cancelled_requests, 1);
    let refunds = scalar(
        &app,
        "SELECT coalesce(sum(refunds), 0)::bigint FROM sales_daily",
    )
    .await;
    assert_eq!(refunds, 1);
    assert!(app.ledger_mismatches().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_an_event_is_set_aside_and_the_next_one_applied() {
    let app = TestApp::spawn().await;
    let product = app.stocked_product(700, 10).await;
    paid_order(&app, &product, 1).await;
    app.settle().await;

    let events = &app.state.config.events;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", events.brokers.as_deref().unwrap())
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to(&events.topic)
                .key("poison")
                .payload("{not json"),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    // An order after the poison message is still applied by everyone.
    paid_order(&app, &product, 2).await;
    app.settle().await;
    assert_eq!(app.stock(&product).await, (7, 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(&app, "SELECT count(*) FROM failed_events").await < 4 {
        assert!(
            Instant::now() < deadline,
            "each consumer sets the poison message aside"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reasons: Vec<String> = sqlx::query_scalar("SELECT DISTINCT error FROM failed_events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("not an order event"), "{reasons:?}");
}

/// The broker is killed and started again while orders keep coming: the relay and the
/// consumers reconnect by themselves and no event is lost or applied twice.
///
/// The test owns its runtime so that the runtime (with the app's consumers) goes before
/// the broker does: a consumer dropped after its broker is gone waits in librdkafka's
/// close for a group it can no longer leave, and that once held this test for over 25
/// minutes after its last assertion had passed.
#[test]
fn orders_flow_through_a_broker_restart() {
    let broker = Broker::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = TestApp::spawn_with(|c| c.events.brokers = Some(broker.address())).await;
        let product = app.stocked_product(300, 1000).await;
        paid_order(&app, &product, 1).await;
        app.settle().await;

        let mut orders = 1;
        for round in 0..3 {
            for _ in 0..5 {
                paid_order(&app, &product, 1).await;
                orders += 1;
            }
            if round == 1 {
                broker.kill();
                // Orders keep being placed while the broker is down: the outbox holds them.
                for _ in 0..5 {
                    paid_order(&app, &product, 1).await;
                    orders += 1;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                broker.resume();
            }
        }
        app.settle().await;
        assert_eq!(app.stock(&product).await, (1000 - orders, 0));
        let counts = effects(&app).await;
        assert_eq!(counts["commits"], orders);
        assert_eq!(counts["emails"], orders);
        assert_eq!(counts["sales"], orders);
        assert_eq!(counts["processed"], orders * 8);
        assert!(app.ledger_mismatches().await.is_empty());
    });
    drop(runtime);
    drop(broker);
}

/// Each consumer applied each order's events in the order they happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_apply_an_orders_events_in_order() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let product = app.stocked_product(100, 100).await;
    for _ in 0..5 {
        let (_, order) = paid_order(&app, &product, 1).await;
        for to in ["fulfilling", "shipped", "delivered"] {
            let (status, body) = app
                .post(
                    &format!("/api/v1/orders/{order}/status"),
                    Some(&staff.token),
                    json!({ "status": to }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    app.settle().await;
    let out_of_order = scalar(
        &app,
        "SELECT count(*) FROM (
             SELECT order_seq < lag(order_seq) OVER (PARTITION BY consumer, order_id ORDER BY processed_at, order_seq) AS back
             FROM processed_events) p WHERE back",
    )
    .await;
    assert_eq!(out_of_order, 0);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM processed_events").await,
        5 * 5 * 4
    );
}

/// docs/events/ holds the schema these types produce (regenerate: UPDATE_EVENT_SCHEMAS=1).
#[test]
fn the_documented_event_schema_is_current() {
    let schema = shop::events::model::json_schema();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/events/order-event.v1.schema.json");
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_EVENT_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == text,
        "docs/events/order-event.v1.schema.json is stale; run with UPDATE_EVENT_SCHEMAS=1"
    );
}

async fn applied(app: &TestApp) -> i64 {
    scalar(app, "SELECT count(*) FROM processed_events").await
}

/// SIGKILL in the middle of the stream: what the dead worker applied stays applied once, and
/// what it had not finished is applied by the next worker, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_nothing_and_repeats_nothing() {
    let app = TestApp::spawn().await;
    let product = app.stocked_product(100, 1000).await;
    const ORDERS: i64 = 30;
    for _ in 0..ORDERS {
        paid_order(&app, &product, 1).await;
    }
    let total = ORDERS * 2 * 4;

    let mut worker = WorkerProcess::start(&app, &events_settings(&app));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = applied(&app).await;
        assert!(
            done < total,
            "the worker finished before it could be killed: make the stream longer"
        );
        if done > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker applied nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.signal(libc::SIGKILL);
    worker.exit(Duration::from_secs(10)).await;
    let at_kill = applied(&app).await;
    assert!(at_kill < total);

    let mut worker = WorkerProcess::start(&app, &events_settings(&app));
    app.settled().await;
    let counts = effects(&app).await;
    assert_eq!(
        counts,
        json!({ "commits": ORDERS, "emails": ORDERS, "warehouse_requests": ORDERS,
                "sales": ORDERS, "revenue": ORDERS * 595, "processed": total })
    );
    assert_eq!(app.stock(&product).await, (1000 - ORDERS as i32, 0));

    // Its metrics, for dashboards and autoscaling.
    let metrics = worker.metrics_text().await;
    for name in [
        "events_consumed_total",
        "events_published_total",
        "events_consumer_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // SIGTERM: it stops consuming, finishes, and exits cleanly.
    worker.signal(libc::SIGTERM);
    let status = worker.exit(Duration::from_secs(25)).await;
    assert!(status.success(), "{status}");
}

/// SIGTERM with the broker gone: the consumers can never leave their groups (librdkafka's
/// close waits for that without a bound), and the worker exits anyway, once its grace
/// period is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_within_its_grace_period_with_the_broker_gone() {
    let broker = Broker::start();
    let app = TestApp::spawn_with(|c| c.events.brokers = Some(broker.address())).await;
    let product = app.stocked_product(100, 100).await;
    paid_order(&app, &product, 1).await;

    const GRACE: Duration = Duration::from_secs(2);
    let mut settings = events_settings(&app);
    settings.push((
        "APP_WORKER__SHUTDOWN_GRACE_MS",
        GRACE.as_millis().to_string(),
    ));
    let mut worker = WorkerProcess::start(&app, &settings);
    // Every consumer has joined its group and applied the order's events.
    app.settled().await;

    broker.kill();
    worker.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let status = worker.exit(GRACE + Duration::from_secs(2)).await;
    assert!(status.success(), "{status}; its log:\n{}", worker.log());
    eprintln!("the worker exited {:?} after SIGTERM", stopping.elapsed());
}

#[tokio::test]
async fn the_worker_refuses_to_start_with_nothing_to_do() {
    let app = TestApp::spawn().await;
    use secrecy::ExposeSecret;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
        .arg("worker")
        .env_clear()
        .env("APP_DATABASE__URL", &app.database_url)
        .env(
            "APP_AUTH__JWT_SECRET",
            app.state.config.auth.jwt_secret.expose_secret(),
        )
        .env(
            "APP_PAYMENTS__WEBHOOK_SECRET",
            app.state.config.payments.webhook_secret.expose_secret(),
        )
        .env("APP_WORKER__METRICS_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("set events.brokers (APP_EVENTS__BROKERS)")
            && stderr.contains("jobs.amqp_url (APP_JOBS__AMQP_URL)"),
        "{stderr}"
    );
}
