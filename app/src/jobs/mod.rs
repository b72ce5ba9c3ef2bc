//! Background jobs on RabbitMQ: emails and payment work that must not run inside a request.
//!
//! A job is written to the `job_outbox` table in the transaction of the change that causes
//! it ([`enqueue_email`], [`enqueue`]), so it exists exactly when the change does. The
//! `app worker` process ([`run`]) publishes outbox rows to the broker with publisher confirms
//! (`dispatcher`), and consumes the `emails` and `payments` queues (`consumer`), acking each
//! message only after its work is done. Failed jobs are retried with exponential backoff
//! through delay queues and end in a dead-letter queue (`topology`). Delivery is at least
//! once; every handler is idempotent on the job's key, so the effect happens once.
//! docs/jobs.md describes the whole design.

pub mod config;
mod consumer;
mod dispatcher;
pub mod email;
mod metrics;
mod refund;
pub mod topology;

use std::future::Future;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

pub use refund::{enqueue_refund, REFUND_KIND};

use crate::state::AppState;

/// The work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Emails,
    Payments,
}

impl Queue {
    pub const ALL: [Queue; 2] = [Queue::Emails, Queue::Payments];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Emails => "emails",
            Queue::Payments => "payments",
        }
    }

    pub fn from_name(name: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.name() == name)
    }
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The body of every job message (JSON). The key is also the message id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub key: String,
    pub payload: Value,
}

pub const EMAIL_KIND: &str = "email";

/// Queues a job in the caller's transaction. Returns false when a job with this key exists
/// already (queued before, or done): the same effect is never queued twice.
pub async fn enqueue(
    conn: &mut PgConnection,
    queue: Queue,
    kind: &str,
    key: &str,
    payload: Value,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO job_outbox (id, queue, kind, key, payload) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        queue.name(),
        kind,
        key,
        payload,
    )
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// Queues an email in the caller's transaction: `template` (see [`email::TEMPLATES`])
/// rendered with `payload` and sent to `recipient` by the worker. Idempotent on `key`
/// (e.g. `password-reset:<token id>`): a second call with the same key does nothing, and
/// the key is the email's Message-ID, so one key is at most one email.
pub async fn enqueue_email(
    conn: &mut sqlx::PgConnection,
    key: &str,
    recipient: &str,
    template: &str,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let job = serde_json::json!({ "recipient": recipient, "template": template, "data": payload });
    enqueue(conn, Queue::Emails, EMAIL_KIND, key, job).await?;
    Ok(())
}

/// The worker: the outbox dispatcher and the consumers of every queue, until `shutdown`
/// resolves; then consuming stops and jobs in flight get `worker.shutdown_grace_ms` to
/// finish (the broker requeues whatever is left unacknowledged). Broker and database
/// outages are waited out: every part reconnects by itself.
pub async fn run(
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let url = state
        .config
        .jobs
        .amqp_url
        .clone()
        .context("jobs.amqp_url is not set (APP_JOBS__AMQP_URL): the worker needs a broker")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("worker shutting down: no new jobs; finishing jobs in flight");
        let _ = stop_tx.send(true);
    });
    let broker = topology::Broker::new(url, &state.config.jobs);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatcher::run(
        state.clone(),
        broker.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(metrics::sample_depths(
        state.clone(),
        broker.clone(),
        stop_rx.clone(),
    ));
    for queue in Queue::ALL {
        tasks.spawn(consumer::run(
            state.clone(),
            broker.clone(),
            queue,
            stop_rx.clone(),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a worker task panicked")??;
    }
    Ok(())
}
