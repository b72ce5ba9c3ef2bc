//! Running one consumer: receive an event, apply it once, then let its offset be committed.
//!
//! The offset of a message is stored only after its transaction committed, so a worker that
//! dies mid-event leaves it to be delivered again, and the processed_events row makes that
//! second delivery change nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    message::{BorrowedMessage, Message},
    Offset,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{consumers::Consumer, kafka, model::VERSION, OrderEvent};
use crate::{error::ApiError, state::AppState};

/// Attempts at an event that fails for a reason other than the database being unreachable,
/// before it is set aside in failed_events.
const MAX_ATTEMPTS: u32 = 5;

/// Consumes until `shutdown`; a client that fails is made again after a pause.
pub async fn run(
    state: AppState,
    consumer: Consumer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = &state.config.events;
    let group = format!("{}{}", config.group_prefix, consumer.name());
    while !shutdown.is_cancelled() {
        let client = match connect(&state, &group).await {
            Ok(client) => Arc::new(client),
            Err(error) => {
                tracing::warn!(consumer = consumer.name(), %error, "consumer: cannot start; retrying");
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        let lag = tokio::spawn(report_lag(client.clone(), consumer, shutdown.child_token()));
        consume(&state, &client, consumer, &shutdown).await;
        lag.abort();
        // Whatever was applied is committed before the group hands the partitions on.
        if let Err(error) = client.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(consumer = consumer.name(), %error, "final commit");
        }
    }
    Ok(())
}

async fn connect(state: &AppState, group: &str) -> anyhow::Result<StreamConsumer> {
    let config = &state.config.events;
    kafka::ensure_topic(config).await?;
    let client = kafka::consumer(config, group)?;
    client.subscribe(&[&config.topic])?;
    Ok(client)
}

async fn consume(
    state: &AppState,
    client: &StreamConsumer,
    consumer: Consumer,
    shutdown: &CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = client.recv() => message,
            _ = shutdown.cancelled() => return,
        };
        match message {
            Ok(message) => {
                if handle(state, consumer, &message, shutdown).await {
                    if let Err(error) = client.store_offset_from_message(&message) {
                        tracing::warn!(consumer = consumer.name(), %error, "storing an offset");
                    }
                } else {
                    // Shutting down mid-event: its offset stays where it was.
                    return;
                }
            }
            Err(error) => {
                metrics::counter!("events_consumer_errors_total", "consumer" => consumer.name())
                    .increment(1);
                tracing::warn!(consumer = consumer.name(), %error, "receiving");
                pause(shutdown, Duration::from_millis(200)).await;
            }
        }
    }
}

/// Applies one message, retrying while the database is unavailable. True when the message
/// is done with (applied, seen before, or set aside); false when shutdown interrupted it.
async fn handle(
    state: &AppState,
    consumer: Consumer,
    message: &BorrowedMessage<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let event = match parse(message) {
        Ok(event) => event,
        Err(error) => {
            set_aside(state, consumer, message, &error).await;
            return true;
        }
    };
    let mut attempt = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        attempt += 1;
        match apply_once(state, consumer, &event).await {
            Ok(applied) => {
                let outcome = if applied { "applied" } else { "duplicate" };
                metrics::counter!("events_consumed_total", "consumer" => consumer.name(), "outcome" => outcome)
                    .increment(1);
                if applied {
                    let age = OffsetDateTime::now_utc() - event.occurred_at;
                    metrics::histogram!("events_consumer_latency_seconds", "consumer" => consumer.name())
                        .record(age.as_seconds_f64().max(0.0));
                }
                return true;
            }
            Err(error) if !is_unavailable(&error) && attempt >= MAX_ATTEMPTS => {
                set_aside(state, consumer, message, &error.to_string()).await;
                return true;
            }
            Err(error) => {
                tracing::warn!(consumer = consumer.name(), event = %event.id, attempt, %error, "applying; will retry");
                if !pause(shutdown, backoff).await {
                    return false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn parse(message: &BorrowedMessage<'_>) -> Result<OrderEvent, String> {
    let payload = message
        .payload_view::<str>()
        .ok_or("the message has no payload")?
        .map_err(|e| format!("the payload is not UTF-8: {e}"))?;
    let event: OrderEvent =
        serde_json::from_str(payload).map_err(|e| format!("not an order event: {e}"))?;
    if event.version != VERSION {
        return Err(format!("event version {} is not {VERSION}", event.version));
    }
    Ok(event)
}

/// In one transaction: record the event as processed by `consumer` and, if it was new,
/// apply it. False when the event had been applied before.
async fn apply_once(
    state: &AppState,
    consumer: Consumer,
    event: &OrderEvent,
) -> Result<bool, ApiError> {
    let mut tx = state.db.write.begin().await?;
    let fresh = sqlx::query!(
        "INSERT INTO processed_events (consumer, event_id, order_id, order_seq, event_created_at)
         SELECT $1, $2, $3, $4, created_at FROM order_events WHERE id = $2
         ON CONFLICT (consumer, event_id) DO NOTHING",
        consumer.name(),
        event.id,
        event.order_id,
        event.sequence,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        consumer.apply(&mut tx, event).await?;
    }
    tx.commit().await?;
    if fresh && consumer.changes_catalog(event) {
        // Stock shown on product pages changed: every replica's cache forgets its pages.
        if let Err(error) = crate::catalog::cache::invalidate(state).await {
            tracing::warn!(%error, "catalog cache not invalidated; pages expire within their TTL");
        }
    }
    Ok(fresh)
}

fn is_unavailable(error: &ApiError) -> bool {
    matches!(error, ApiError::Unavailable { .. })
}

/// Keeps an event that cannot be applied, so nothing disappears without a trace.
async fn set_aside(
    state: &AppState,
    consumer: Consumer,
    message: &BorrowedMessage<'_>,
    error: &str,
) {
    metrics::counter!("events_failed_total", "consumer" => consumer.name()).increment(1);
    tracing::error!(
        consumer = consumer.name(),
        partition = message.partition(),
        offset = message.offset(),
        error,
        "event set aside in failed_events"
    );
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let payload = message
        .payload()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let result = sqlx::query!(
        "INSERT INTO failed_events (consumer, topic, partition, \"offset\", key, payload, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        consumer.name(),
        message.topic(),
        message.partition(),
        message.offset(),
        key,
        payload,
        error,
    )
    .execute(&state.db.write)
    .await;
    if let Err(error) = result {
        tracing::error!(%error, "recording a failed event");
    }
}

/// Sleeps unless shutdown comes first; false on shutdown.
async fn pause(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Every few seconds: how many events of its partitions this consumer has yet to read.
async fn report_lag(client: Arc<StreamConsumer>, consumer: Consumer, shutdown: CancellationToken) {
    while pause(&shutdown, Duration::from_secs(5)).await {
        let client = client.clone();
        let started = Instant::now();
        let lag = tokio::task::spawn_blocking(move || -> Option<i64> {
            let positions = client.position().ok()?;
            let mut lag = 0;
            for element in positions.elements() {
                let (_, high) = client
                    .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(1))
                    .ok()?;
                if let Offset::Offset(position) = element.offset() {
                    lag += (high - position).max(0);
                } else {
                    lag += high.max(0);
                }
            }
            Some(lag)
        })
        .await;
        if let Ok(Some(lag)) = lag {
            metrics::gauge!("events_consumer_lag", "consumer" => consumer.name()).set(lag as f64);
        }
        tracing::trace!(elapsed = ?started.elapsed(), "lag sampled");
    }
}
