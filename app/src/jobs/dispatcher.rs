//! Publishes the job outbox to the broker.
//!
//! One dispatcher is active at a time: it holds a session advisory lock on a connection of
//! its own, and the others wait for it. Woken by `NOTIFY job_outbox` (sent at the commit of
//! every enqueueing transaction) and by a poll as a fallback, it publishes unpublished rows
//! in order with publisher confirms and marks those the broker confirmed. A crash between
//! the confirm and the mark publishes a row again: consumers are idempotent on the key.

use std::time::Duration;

use anyhow::Context;
use lapin::{
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties,
};
use secrecy::ExposeSecret;
use sqlx::{postgres::PgListener, Connection, PgConnection};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    topology::{self, Broker},
    Job, Queue,
};
use crate::state::AppState;

/// The advisory lock key of the dispatcher ("jobs" in ASCII).
const LOCK_KEY: i64 = 0x6a_6f_62_73;
const BATCH: i64 = 100;

pub async fn run(
    state: AppState,
    broker: Broker,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let delay = state.config.jobs.reconnect_delay();
    while !*stop.borrow() {
        match dispatch(&state, &broker, &mut stop).await {
            Ok(()) => break,
            Err(error) => {
                metrics::counter!("jobs_dispatcher_errors_total").increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "job dispatcher: retrying in {delay:?}"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    Ok(())
}

/// Takes the lock, then publishes until stopped; returns an error when the database or the
/// broker fails, and the caller starts over.
async fn dispatch(
    state: &AppState,
    broker: &Broker,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = state.config.database.url.expose_secret();
    let mut lock = PgConnection::connect(url)
        .await
        .context("dispatcher: connecting to the database")?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut lock)
            .await?;
        if locked {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(state.config.jobs.poll_interval() * 5) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    tracing::info!("job dispatcher active");
    let mut listener = PgListener::connect(url).await?;
    listener.listen("job_outbox").await?;
    let connection = broker
        .connect("dispatcher", Duration::from_secs(10))
        .await?;
    let channel = topology::confirm_channel(&connection).await?;
    let poll = state.config.jobs.poll_interval();
    loop {
        // The lock's connection must still be alive, or another dispatcher may have taken over.
        sqlx::query("SELECT 1").execute(&mut lock).await?;
        let published = publish_batch(state, &channel).await?;
        if published as i64 == BATCH {
            continue;
        }
        if *stop.borrow() {
            let _ = connection.close(200, "worker stopping".into()).await;
            return Ok(());
        }
        tokio::select! {
            notification = listener.recv() => { notification?; }
            () = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

struct Row {
    id: Uuid,
    queue: String,
    kind: String,
    key: String,
    payload: serde_json::Value,
}

/// Publishes up to one batch of the oldest unpublished jobs; returns how many.
async fn publish_batch(state: &AppState, channel: &lapin::Channel) -> anyhow::Result<usize> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, queue, kind, key, payload FROM job_outbox
         WHERE published_at IS NULL ORDER BY created_at, id LIMIT $1",
        BATCH
    )
    .fetch_all(&state.db.write)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Publish the whole batch, then wait for the confirms: one round trip, not one per job.
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let queue = Queue::from_name(&row.queue)
            .with_context(|| format!("job {} names an unknown queue {}", row.key, row.queue))?;
        let body = serde_json::to_vec(&Job {
            kind: row.kind.clone(),
            key: row.key.clone(),
            payload: row.payload.clone(),
        })?;
        let confirm = channel
            .basic_publish(
                topology::WORK_EXCHANGE.into(),
                queue.name().into(),
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                properties(&row.key, &row.kind),
            )
            .await?;
        confirms.push((row.id, queue, confirm));
    }
    let mut done = Vec::with_capacity(confirms.len());
    for (id, queue, confirm) in confirms {
        let confirmation = confirm.await?;
        if confirmation.is_ack() && confirmation.take_message().is_none() {
            done.push(id);
            metrics::counter!("jobs_published_total", "queue" => queue.name()).increment(1);
        } else {
            tracing::warn!(%id, "the broker did not take a job; it stays in the outbox");
        }
    }
    sqlx::query!(
        "UPDATE job_outbox SET published_at = now() WHERE id = ANY($1)",
        &done
    )
    .execute(&state.db.write)
    .await?;
    if done.len() < rows.len() {
        anyhow::bail!(
            "the broker refused {} of {} jobs",
            rows.len() - done.len(),
            rows.len()
        );
    }
    Ok(rows.len())
}

/// Persistent, JSON, with the job's key as the message id.
pub fn properties(key: &str, kind: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(ShortString::from("x-attempts"), AMQPValue::LongInt(0));
    BasicProperties::default()
        .with_message_id(key.into())
        .with_type(kind.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(time::OffsetDateTime::now_utc().unix_timestamp() as u64)
        .with_headers(headers)
}
