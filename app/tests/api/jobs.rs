//! Background jobs against real servers: a RabbitMQ node, the aiosmtpd sink, PostgreSQL,
//! and the worker in this process or as the real `app worker` binary (to kill it).

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use shop::{
    money::Money,
    payments::gateway::{
        CardDetails, ChargeOutcome, GatewayError, PaymentGateway, TestGateway, Tokenized,
    },
    AppState, Config,
};
use uuid::Uuid;

use crate::{
    harness::TestApp,
    payments::{add_card, order_status, pay, pending_order},
    rabbitmq::RabbitServer,
    smtp::SmtpSink,
    worker_process::WorkerProcess,
};

/// Settings of a test worker: short delays, three attempts.
fn configure(config: &mut Config, rabbit: &RabbitServer, sink: &SmtpSink) {
    config.jobs.amqp_url = Some(rabbit.url().into());
    config.jobs.retry_delays_ms = vec![200, 400, 800];
    config.jobs.max_attempts = 3;
    config.jobs.poll_interval_ms = 200;
    config.jobs.reconnect_delay_ms = 200;
    config.jobs.depth_interval_ms = 300;
    config.smtp.port = sink.port;
    config.worker.shutdown_grace_ms = 10_000;
}

/// `shop::jobs::run` in this process, stopped by `stop`.
struct Worker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    fn start(state: AppState) -> Worker {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(shop::jobs::run(state, async {
            let _ = rx.await;
        }));
        Worker {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the worker stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real `app worker` binary with the job broker and SMTP sink of the test, and
/// `settings` on top.
fn jobs_worker(
    app: &TestApp,
    rabbit: &RabbitServer,
    sink: &SmtpSink,
    settings: &[(&str, &str)],
) -> WorkerProcess {
    let mut all: Vec<(&str, String)> = vec![
        ("APP_JOBS__AMQP_URL", rabbit.url()),
        ("APP_JOBS__RETRY_DELAYS_MS", "[200, 400, 800]".into()),
        ("APP_JOBS__MAX_ATTEMPTS", "3".into()),
        ("APP_JOBS__POLL_INTERVAL_MS", "200".into()),
        ("APP_JOBS__RECONNECT_DELAY_MS", "200".into()),
        ("APP_JOBS__DEPTH_INTERVAL_MS", "300".into()),
        ("APP_SMTP__PORT", sink.port.to_string()),
    ];
    all.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
    WorkerProcess::start(app, &all)
}

async fn enqueue(app: &TestApp, key: &str, recipient: &str) {
    let mut conn = app.pool.acquire().await.unwrap();
    shop::jobs::enqueue_email(
        &mut conn,
        key,
        recipient,
        "order_confirmation",
        json!({ "order_id": key, "total_minor": 1234, "currency": "EUR" }),
    )
    .await
    .unwrap();
}

async fn amqp(rabbit: &RabbitServer) -> Connection {
    Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap()
}

/// Messages waiting in `queue` (a passive declare).
async fn depth(rabbit: &RabbitServer, queue: &str) -> u32 {
    let connection = amqp(rabbit).await;
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "".into()).await;
    declared.message_count()
}

/// A message taken off a dead-letter queue: its key and headers.
struct Dead {
    key: String,
    attempts: i64,
    error: String,
}

/// Waits (at most 20 s) until `queue` holds `n` messages, then takes them all off.
async fn take_dead(rabbit: &RabbitServer, queue: &str, n: u32) -> Vec<Dead> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while depth(rabbit, queue).await < n {
        assert!(
            Instant::now() < deadline,
            "{queue} did not reach {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connection = amqp(rabbit).await;
    let channel = connection.create_channel().await.unwrap();
    let mut dead = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let get = |name: &str| headers.inner().get(name).cloned();
        dead.push(Dead {
            key: message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_default(),
            attempts: match get("x-attempts") {
                Some(AMQPValue::LongInt(n)) => n.into(),
                Some(AMQPValue::LongLongInt(n)) => n,
                _ => -1,
            },
            error: match get("x-last-error") {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                _ => String::new(),
            },
        });
    }
    let _ = connection.close(200, "".into()).await;
    dead
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_receipt_emails_arrive_once() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(|c| configure(c, &rabbit, &sink)).await;
    let worker = Worker::start(app.state.clone());

    let user = app.customer().await;
    let (status, _) = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            json!({ "email": user.email }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let product = app.stocked_product(1250, 5).await;
    let order = pending_order(&app, &user, product, 1250, 2).await;
    let card = add_card(&app, &user, "4242424242424242").await;
    let (status, paid) = pay(&app, &user, order, card).await;
    assert_eq!(status, StatusCode::OK, "{paid}");

    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let reset = messages
        .iter()
        .find(|m| m.contains("Subject: Reset your password"))
        .expect("the reset email");
    let receipt = messages
        .iter()
        .find(|m| m.contains("Subject: Your payment was received"))
        .expect("the receipt");
    for message in [reset, receipt] {
        assert!(
            message.contains(&format!("To: {}", user.email)),
            "{message}"
        );
        assert!(
            message.contains("From: Shop <no-reply@shop.localhost>"),
            "{message}"
        );
    }
    let token_payload: serde_json::Value = sqlx::query_scalar(
        "SELECT payload->'data' FROM job_outbox WHERE key LIKE 'password-reset:%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(reset.contains(token_payload["token"].as_str().unwrap()));
    let payment_id = paid["payment"]["id"].as_str().unwrap();
    assert!(
        receipt.contains("25.00 EUR") && receipt.contains(&order.to_string()),
        "{receipt}"
    );
    assert!(
        receipt.contains(&format!(
            "Message-ID: <payment-receipt.{payment_id}@shop.localhost>"
        )),
        "{receipt}"
    );

    // Nothing more arrives; everything is published and recorded as sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(count(&app, "SELECT count(*) FROM sent_emails").await, 2);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE published_at IS NULL"
        )
        .await,
        0
    );
    // Enqueueing a key again does nothing.
    let mut conn = app.pool.acquire().await.unwrap();
    shop::jobs::enqueue_email(
        &mut conn,
        &format!("payment-receipt:{payment_id}"),
        &user.email,
        "payment_receipt",
        json!({}),
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(count(&app, "SELECT count(*) FROM job_outbox").await, 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_sends_the_email_once() {
    let rabbit = RabbitServer::start();
    // The worker waits 2 s for the greeting: long enough to be killed while it waits.
    let sink = SmtpSink::start_with_delay(2.0);
    let app = TestApp::spawn().await;
    let mut first = jobs_worker(&app, &rabbit, &sink, &[]);
    enqueue(&app, "kill-test:1", "someone@example.com").await;

    wait_for_connection(&sink, 1, &first).await;
    first.signal(libc::SIGKILL);
    first.exit(Duration::from_secs(10)).await;
    assert_eq!(sink.messages().len(), 0);

    let second = jobs_worker(&app, &rabbit, &sink, &[]);
    sink.wait_for(1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1, "exactly one email");
    assert!(sink.connections() >= 2, "the job was delivered again");
    assert_eq!(count(&app, "SELECT count(*) FROM sent_emails").await, 1);
    assert_eq!(depth(&rabbit, "emails").await, 0);

    // The worker's metrics: the job, and the sampled queue depth. The job may reach the
    // second worker twice (redelivered, and published again by its relay when the first was
    // killed before marking it published); either way one email went out, checked above.
    let metrics = second.metrics_text().await;
    let processed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"jobs_processed_total{queue="emails"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&processed), "{metrics}");
    assert!(
        metrics.contains(r#"jobs_queue_depth{queue="emails.dlq"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("job_duration_seconds_bucket"), "{metrics}");
}

/// Waits (at most 30 s) until the worker holds a connection to the sink: the job is in
/// flight, waiting for the greeting.
async fn wait_for_connection(sink: &SmtpSink, at_least: usize, worker: &WorkerProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.connections() < at_least {
        assert!(
            Instant::now() < deadline,
            "the worker never reached the SMTP server; its log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_every_worker_is_dead_lettered_by_the_broker() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start_with_delay(5.0);
    let app = TestApp::spawn().await;
    enqueue(&app, "crash:1", "someone@example.com").await;
    // Delivered, then returned by a killed worker twice: more than the limit of 1.
    for round in 1..=2 {
        let mut worker = jobs_worker(&app, &rabbit, &sink, &[("APP_JOBS__DELIVERY_LIMIT", "1")]);
        wait_for_connection(&sink, round, &worker).await;
        worker.signal(libc::SIGKILL);
        worker.exit(Duration::from_secs(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while depth(&rabbit, "emails.dlq").await < 1 {
        assert!(
            Instant::now() < deadline,
            "the broker did not dead-letter the job"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth(&rabbit, "emails").await, 0);
    let connection = amqp(&rabbit).await;
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("emails.dlq".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the dead letter");
    assert_eq!(
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|k| k.as_str()),
        Some("crash:1")
    );
    let headers = message.delivery.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death header: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("{deaths:?}");
    };
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("delivery_limit".into()))
    );
    let _ = connection.close(200, "".into()).await;
    assert_eq!(sink.messages().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_are_retried_then_dead_lettered_and_poison_never_blocks() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(|c| configure(c, &rabbit, &sink)).await;
    let worker = Worker::start(app.state.clone());

    // Refused twice (451), then accepted: after 200 ms and 400 ms of backoff.
    let started = Instant::now();
    enqueue(&app, "retry:flaky", "flaky2-a@example.com").await;
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    assert!(messages[0].contains("To: flaky2-a@example.com"));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "retried without backoff: {:?}",
        started.elapsed()
    );

    // Always refused: three attempts, then the dead-letter queue with the last error.
    enqueue(&app, "retry:always", "tempfail@example.com").await;
    // Refused for good (550): dead-lettered after one attempt.
    enqueue(&app, "retry:rejected", "reject@example.com").await;
    let mut dead = take_dead(&rabbit, "emails.dlq", 2).await;
    dead.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(dead[0].key, "retry:always");
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("451"), "{}", dead[0].error);
    assert_eq!(dead[1].key, "retry:rejected");
    assert_eq!(dead[1].attempts, 1);
    assert!(dead[1].error.contains("550"), "{}", dead[1].error);

    // A poison message goes to the dead-letter queue at once; the job behind it runs.
    let connection = amqp(&rabbit).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            "jobs".into(),
            "emails".into(),
            BasicPublishOptions::default(),
            b"{ this is not a job",
            BasicProperties::default().with_message_id("poison".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "".into()).await;
    enqueue(&app, "after-poison", "next@example.com").await;
    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    assert!(messages[1].contains("To: next@example.com"));
    let dead = take_dead(&rabbit, "emails.dlq", 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "poison");
    assert!(dead[0].error.contains("not a job"), "{}", dead[0].error);
    assert_eq!(sink.messages().len(), 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_broker_restart() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(|c| configure(c, &rabbit, &sink)).await;
    let worker = Worker::start(app.state.clone());

    for i in 0..25 {
        enqueue(&app, &format!("restart:{i}"), &format!("r{i}@example.com")).await;
    }
    sink.wait_for(5, Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| rabbit.stop());
    // Jobs keep being accepted while the broker is down: they wait in the outbox.
    for i in 25..50 {
        enqueue(&app, &format!("restart:{i}"), &format!("r{i}@example.com")).await;
    }
    tokio::task::block_in_place(|| rabbit.spawn());

    let messages = sink.wait_for(50, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut recipients: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 50, "every job, once");
    assert_eq!(sink.messages().len(), messages.len().max(50));
    assert_eq!(sink.messages().len(), 50, "no email twice");
    assert_eq!(count(&app, "SELECT count(*) FROM sent_emails").await, 50);
    worker.stop().await;
}

/// The test gateway, whose refunds fail transiently `failures` times first.
struct FlakyRefunds {
    failures: AtomicU32,
    refunds: Mutex<Vec<Uuid>>,
}

#[async_trait::async_trait]
impl PaymentGateway for FlakyRefunds {
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
        TestGateway.charge(token, amount, key).await
    }
    async fn refund(&self, reference: &str, amount: Money, key: Uuid) -> Result<(), GatewayError> {
        self.refunds.lock().unwrap().push(key);
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(GatewayError::Transient);
        }
        TestGateway.refund(reference, amount, key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_gateway_cannot_take_is_queued_and_made_once() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start();
    let gateway = Arc::new(FlakyRefunds {
        failures: AtomicU32::new(3),
        refunds: Mutex::default(),
    });
    let shared = gateway.clone();
    let app =
        TestApp::spawn_with_state(|c| configure(c, &rabbit, &sink), |s| s.gateway = shared).await;
    let user = app.customer().await;
    let staff = app.staff().await;
    let product = app.stocked_product(1000, 5).await;
    let order = pending_order(&app, &user, product, 1000, 2).await;
    let card = add_card(&app, &user, "4242424242424242").await;
    assert_eq!(pay(&app, &user, order, card).await.0, StatusCode::OK);

    // Twice while the gateway is down: 202 both times, one job.
    let refund = format!("/api/v1/orders/{order}/refund");
    for _ in 0..2 {
        let (status, body) = app
            .call(Method::POST, &refund, Some(&staff.token), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(
            body,
            json!({ "order_id": order, "order_status": "paid", "job": format!("refund:{order}") })
        );
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE queue = 'payments'"
        )
        .await,
        1
    );
    assert_eq!(order_status(&app, order).await, "paid");

    // The worker: fails once more (the gateway is still down), then refunds.
    let worker = Worker::start(app.state.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while order_status(&app, order).await != "refunded" {
        assert!(Instant::now() < deadline, "the queued refund was not made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = gateway.refunds.lock().unwrap().clone();
    assert_eq!(
        keys.len(),
        4,
        "two refused requests, one refused job attempt, one refund"
    );
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one idempotency key throughout"
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) FROM payments WHERE order_id = '{order}' AND status = 'refunded'"
            )
        )
        .await,
        1
    );
    let history: Vec<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT to_status, actor_id FROM order_status_history WHERE order_id = $1 AND to_status = 'refunded'",
    )
    .bind(order)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(history, vec![("refunded".to_owned(), Some(staff.id))]);
    assert_eq!(app.stock(&product).await, (5, 0), "the stock came back");
    // Now refunded: asking again is a conflict, as before.
    let (status, body) = app
        .call(Method::POST, &refund, Some(&staff.token), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_not_refundable"))
    );
    worker.stop().await;

    // Without a job broker, a gateway outage is a 503 as before.
    let down = Arc::new(FlakyRefunds {
        failures: AtomicU32::new(u32::MAX),
        refunds: Mutex::default(),
    });
    let app = TestApp::spawn_with_state(|_| {}, |s| s.gateway = down).await;
    let user = app.customer().await;
    let staff = app.staff().await;
    let product = app.stocked_product(1000, 5).await;
    let order = pending_order(&app, &user, product, 1000, 1).await;
    let card = add_card(&app, &user, "4242424242424242").await;
    assert_eq!(pay(&app, &user, order, card).await.0, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{order}/refund"),
            Some(&staff.token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("gateway_unavailable"))
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE queue = 'payments'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_job_in_flight_finish() {
    let rabbit = RabbitServer::start();
    let sink = SmtpSink::start_with_delay(2.0);
    let app = TestApp::spawn().await;
    let mut worker = jobs_worker(&app, &rabbit, &sink, &[]);
    enqueue(&app, "sigterm:1", "someone@example.com").await;
    wait_for_connection(&sink, 1, &worker).await;
    worker.signal(libc::SIGTERM);
    let status = worker.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; log:\n{}", worker.log());
    assert_eq!(sink.messages().len(), 1, "the job in flight finished");
    assert_eq!(count(&app, "SELECT count(*) FROM sent_emails").await, 1);
    assert_eq!(depth(&rabbit, "emails").await, 0, "and was acknowledged");
}

#[tokio::test]
async fn migration_0008_moves_the_unsent_emails_into_the_job_outbox() {
    let server = crate::harness::server();
    let name = format!("migrate_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&server.url("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&server.url(&name)).await.unwrap();
    let migrations: Vec<_> = shop::db::MIGRATOR.iter().collect();
    for m in migrations.iter().filter(|m| m.version < 8) {
        sqlx::raw_sql(&m.sql).execute(&pool).await.unwrap();
    }
    let (unsent, sent) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO email_outbox (id, recipient, template, payload, sent_at)
         VALUES ($1, 'a@example.com', 'password_reset', '{\"token\": \"t1\"}', NULL),
                ($2, 'b@example.com', 'password_reset', '{\"token\": \"t2\"}', now())",
    )
    .bind(unsent)
    .bind(sent)
    .execute(&pool)
    .await
    .unwrap();
    for m in migrations.iter().filter(|m| m.version >= 8) {
        sqlx::raw_sql(&m.sql).execute(&pool).await.unwrap();
    }
    let jobs: Vec<(Uuid, String, String, String, serde_json::Value)> =
        sqlx::query_as("SELECT id, queue, kind, key, payload FROM job_outbox")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        jobs,
        vec![(
            unsent,
            "emails".to_owned(),
            "email".to_owned(),
            format!("email-outbox:{unsent}"),
            json!({ "recipient": "a@example.com", "template": "password_reset", "data": { "token": "t1" } })
        )]
    );
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

/// `smtp.tls = "starttls"` against real relays: one that does not offer STARTTLS and one
/// whose certificate is not trusted get nothing (the job is retried, then dead-lettered);
/// with the private CA's file and the relay's login the email goes over TLS. The relay
/// requiring STARTTLS refuses plain `MAIL FROM`, so an email it took came encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_and_verified_when_configured() {
    let rabbit = RabbitServer::start();
    let ca = crate::smtp::TestCa::new();
    let tls_sink = SmtpSink::start_tls(&ca, Some("shop-relay:relay-password"));
    let plain_sink = SmtpSink::start();
    let (answer, offered) = tokio::task::block_in_place(|| tls_sink.plain_mail_from());
    assert!(offered && answer.starts_with("530"), "{answer}");
    let (answer, offered) = tokio::task::block_in_place(|| plain_sink.plain_mail_from());
    assert!(!offered && answer.starts_with("250"), "{answer}");

    let app = TestApp::spawn().await;

    // No STARTTLS offered: three attempts, nothing sent.
    let (worker, _replica) = tls_worker(&app, &rabbit, &plain_sink, Some(&ca), false).await;
    enqueue(&app, "tls:not-offered", "someone@example.com").await;
    // Once the worker reached the relay its queues exist (the probe was connection 1).
    reached(&plain_sink, 2).await;
    let dead = take_dead(&rabbit, "emails.dlq", 1).await;
    worker.stop().await;
    assert_eq!(
        (dead[0].key.as_str(), dead[0].attempts),
        ("tls:not-offered", 3)
    );
    assert!(dead[0].error.contains("STARTTLS"), "{}", dead[0].error);
    assert_eq!(plain_sink.messages().len(), 0);
    assert!(
        plain_sink.connections() >= 4,
        "the probe above and three attempts reached the relay"
    );

    // STARTTLS offered, certificate from a CA the worker does not trust: nothing sent.
    let (worker, _replica) = tls_worker(&app, &rabbit, &tls_sink, None, true).await;
    enqueue(&app, "tls:untrusted", "someone@example.com").await;
    reached(&tls_sink, 2).await;
    let dead = take_dead(&rabbit, "emails.dlq", 1).await;
    worker.stop().await;
    assert_eq!(
        (dead[0].key.as_str(), dead[0].attempts),
        ("tls:untrusted", 3)
    );
    assert!(
        dead[0].error.to_lowercase().contains("certificate"),
        "{}",
        dead[0].error
    );
    assert_eq!(tls_sink.messages().len(), 0);

    // The CA trusted (smtp.ca_file) and the relay's login: delivered over TLS, logged in.
    let (worker, _replica) = tls_worker(&app, &rabbit, &tls_sink, Some(&ca), true).await;
    enqueue(&app, "tls:delivered", "someone@example.com").await;
    let messages = tls_sink.wait_for(1, Duration::from_secs(20)).await;
    worker.stop().await;
    assert!(
        messages[0].contains("To: someone@example.com"),
        "{}",
        messages[0]
    );
    assert_eq!(tls_sink.sessions(), ["tls shop-relay"]);
    assert_eq!(count(&app, "SELECT count(*) FROM sent_emails").await, 1);
}

/// A worker on `app`'s database sending to `sink` with `smtp.tls = "starttls"`, trusting
/// `ca` (else only the system's CAs), with the relay's login if `login`.
async fn tls_worker(
    app: &TestApp,
    rabbit: &RabbitServer,
    sink: &SmtpSink,
    ca: Option<&crate::smtp::TestCa>,
    login: bool,
) -> (Worker, TestApp) {
    let replica = app
        .replica(|c| {
            configure(c, rabbit, sink);
            c.smtp.tls = shop::jobs::config::SmtpTls::Starttls;
            c.smtp.ca_file = ca.map(|ca| ca.ca_cert.clone());
            if login {
                c.smtp.username = Some("shop-relay".to_owned().into());
                c.smtp.password = Some("relay-password".to_owned().into());
            }
        })
        .await;
    (Worker::start(replica.state.clone()), replica)
}

/// Waits (at most 30 s) until `sink` has seen `n` connections.
async fn reached(sink: &SmtpSink, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.connections() < n {
        assert!(
            Instant::now() < deadline,
            "the worker never reached the relay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
