//! `shopctl jobs dlq list|replay` against a real RabbitMQ node: listing keeps every
//! message, replaying moves exactly the chosen ones (and asks first), an unreachable broker
//! is a clear error.

mod common;

#[path = "../../app/tests/api/rabbitmq.rs"]
mod rabbitmq;

use common::{free_port, Project};
use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use predicates::prelude::*;
use rabbitmq::RabbitServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(rabbit: &RabbitServer) -> (Connection, Channel) {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// The part of the worker's topology the CLI uses, and three dead letters in emails.dlq
/// (as the worker leaves them) and one in payments.dlq.
async fn prepare(rabbit: &RabbitServer) {
    let (connection, channel) = channel(rabbit).await;
    channel
        .exchange_declare(
            "jobs".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for queue in ["emails", "payments"] {
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), quorum)
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.into(),
                "jobs".into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        // As app/src/jobs/topology.rs declares it, plus a delivery limit of 1: it stands
        // for RabbitMQ 4.x's default limit (20) on a queue declared without one. A reader
        // that handed messages back would lose each one on its second listing (the
        // dead-letter queue has no dead-letter exchange of its own).
        let mut dlq = FieldTable::default();
        dlq.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        dlq.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        dlq.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1));
        channel
            .queue_declare(
                format!("{queue}.dlq").as_str().into(),
                QueueDeclareOptions::durable(),
                dlq,
            )
            .await
            .unwrap();
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (queue, key, error) in [
        ("emails", "password-reset:1", "SMTP: 451 try again later"),
        ("emails", "password-reset:2", "SMTP: 451 try again later"),
        (
            "emails",
            "payment-receipt:3",
            "the SMTP server refused the email: 550",
        ),
        (
            "payments",
            "refund:4",
            "payment gateway temporarily unavailable",
        ),
    ] {
        let mut headers = FieldTable::default();
        headers.insert("x-attempts".into(), AMQPValue::LongInt(5));
        headers.insert("x-last-error".into(), AMQPValue::LongString(error.into()));
        headers.insert(
            "x-first-failed-at".into(),
            AMQPValue::LongLongInt(1_790_000_000_000),
        );
        channel
            .basic_publish(
                "".into(),
                format!("{queue}.dlq").as_str().into(),
                BasicPublishOptions::default(),
                format!(r#"{{"kind":"email","key":"{key}","payload":{{}}}}"#).as_bytes(),
                BasicProperties::default()
                    .with_message_id(key.into())
                    .with_type("email".into())
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = connection.close(200, "".into()).await;
}

async fn depth(rabbit: &RabbitServer, queue: &str) -> u32 {
    let (connection, channel) = channel(rabbit).await;
    let n = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    let _ = connection.close(200, "".into()).await;
    n
}

#[test]
fn dlq_list_keeps_and_replay_moves_exactly_the_chosen_jobs() {
    let rabbit = RabbitServer::start();
    let rt = runtime();
    rt.block_on(prepare(&rabbit));
    let project = Project::new();
    // The environment's broker: a URL without password, the password from the variable.
    project.edit(
        "local",
        "amqp_url = \"amqp://shop@127.0.0.1:5672/%2f\"",
        &format!("amqp_url = \"amqp://guest@127.0.0.1:{}/%2f\"", rabbit.port),
    );
    let shopctl = || {
        let mut cmd = project.shopctl();
        cmd.env_remove("SHOPCTL_AMQP_URL")
            .env("SHOPCTL_AMQP_PASSWORD", "guest");
        cmd
    };

    for _ in 0..3 {
        shopctl()
            .args(["jobs", "dlq", "list", "local"])
            .assert()
            .success()
            .stdout(predicate::str::contains("password-reset:1"))
            .stdout(predicate::str::contains("payment-receipt:3"))
            .stdout(predicate::str::contains("refund:4"))
            .stdout(predicate::str::contains("SMTP: 451 try again later"))
            .stdout(predicate::str::contains("2026-09-21T"))
            .stderr(predicate::str::contains("4 dead-lettered jobs"));
    }
    // Listing three times lost nothing.
    assert_eq!(rt.block_on(depth(&rabbit, "emails.dlq")), 3);
    assert_eq!(rt.block_on(depth(&rabbit, "payments.dlq")), 1);

    let out = shopctl()
        .args([
            "jobs", "dlq", "list", "local", "--queue", "payments", "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{
            "queue": "payments", "key": "refund:4", "kind": "email", "attempts": 5,
            "last_error": "payment gateway temporarily unavailable",
            "first_failed_at": "2026-09-21T14:13:20Z"
        }])
    );

    // Without a terminal, replay refuses without --yes and changes nothing.
    shopctl()
        .args([
            "jobs",
            "dlq",
            "replay",
            "local",
            "--key",
            "password-reset:2",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("without --yes"));
    assert_eq!(rt.block_on(depth(&rabbit, "emails.dlq")), 3);
    assert_eq!(rt.block_on(depth(&rabbit, "emails")), 0);

    shopctl()
        .args([
            "jobs",
            "dlq",
            "replay",
            "local",
            "--key",
            "password-reset:2",
            "--yes",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("replayed 1 jobs"));
    assert_eq!(rt.block_on(depth(&rabbit, "emails.dlq")), 2);
    assert_eq!(rt.block_on(depth(&rabbit, "emails")), 1);

    shopctl()
        .args([
            "jobs",
            "dlq",
            "replay",
            "local",
            "--key",
            "no-such-key",
            "--yes",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "no dead-lettered job with key `no-such-key`",
        ));

    // --amqp-url instead of an environment; --queue limits the replay.
    shopctl()
        .args([
            "jobs",
            "dlq",
            "replay",
            "--queue",
            "emails",
            "--all",
            "--yes",
            "--amqp-url",
        ])
        .arg(rabbit.url())
        .assert()
        .success()
        .stderr(predicate::str::contains("replayed 2 jobs"));
    assert_eq!(rt.block_on(depth(&rabbit, "emails.dlq")), 0);
    assert_eq!(rt.block_on(depth(&rabbit, "emails")), 3);
    assert_eq!(rt.block_on(depth(&rabbit, "payments.dlq")), 1);
    assert_eq!(rt.block_on(depth(&rabbit, "payments")), 0);
}

#[test]
fn an_unreachable_broker_says_what_to_check() {
    let project = Project::new();
    let port = common::free_port();
    project.edit(
        "local",
        "amqp_url = \"amqp://shop@127.0.0.1:5672/%2f\"",
        &format!("amqp_url = \"amqp://shop@127.0.0.1:{port}/%2f\""),
    );
    project
        .shopctl()
        .env_remove("SHOPCTL_AMQP_URL")
        .env_remove("SHOPCTL_AMQP_PASSWORD")
        .args(["jobs", "dlq", "list", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "cannot reach the RabbitMQ broker at amqp://shop@127.0.0.1:{port}/%2f"
        )))
        .stderr(predicate::str::contains(
            "SHOPCTL_AMQP_PASSWORD set (it is not)",
        ));
    project
        .shopctl()
        .args(["jobs", "dlq", "list", "--amqp-url"])
        .arg(format!("amqp://guest:secret@127.0.0.1:{port}/%2f"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "amqp://guest:***@127.0.0.1:{port}/%2f"
        )))
        .stderr(predicate::str::contains("secret").not());
}

#[test]
fn a_password_in_the_environment_file_is_refused() {
    let project = Project::new();
    project.edit(
        "local",
        "amqp_url = \"amqp://shop@127.0.0.1:5672/%2f\"",
        "amqp_url = \"amqp://shop:hunter2@127.0.0.1:5672/%2f\"",
    );
    project
        .shopctl()
        .args(["jobs", "dlq", "list", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "jobs.amqp_url: the URL holds a password",
        ))
        .stderr(predicate::str::contains("environments/local.toml:"));
}
