//! Running one consumer: receive an event, apply it once, then let its offset be committed.
//!
//! The offset of a message is stored only after its transaction committed, so a worker that
//! dies mid-event leaves it to be delivered again, and the processed_events row makes that
//! second delivery change nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{channel::oneshot, FutureExt};
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
            Ok(client) => Client(Some(Arc::new(client))),
            Err(error) => {
                tracing::warn!(consumer = consumer.name(), %error, "consumer: cannot start; retrying");
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        let lag = tokio::spawn(report_lag(
            Arc::clone(&client),
            consumer,
            shutdown.child_token(),
        ));
        consume(&state, &client, consumer, &shutdown).await;
        lag.abort();
        // Whatever was applied is committed before the group hands the partitions on. Not
        // waited for: with the broker gone it would never return, and an offset not
        // committed only means a redelivery, which changes nothing.
        if let Err(error) = client.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(consumer = consumer.name(), %error, "final commit");
        }
        // Closed before the process exits, so the group is left cleanly; with the broker
        // gone, the worker's grace period ends this wait.
        let _ = client.close().await;
    }
    Ok(())
}

/// A consumer that is closed on a thread of its own however `run` lets go of it, returning
/// or aborted at the end of the grace period. librdkafka's close waits without a bound to
/// leave the group, forever with the broker gone: on a runtime thread that would stall the
/// runtime, on the blocking pool its shutdown; a detached thread holds up neither, nor the
/// process.
struct Client(Option<Arc<StreamConsumer>>);

impl Client {
    /// Closes it; the receiver hears when it is closed.
    fn close(mut self) -> oneshot::Receiver<()> {
        close_detached(self.0.take().expect("closed once"))
    }
}

impl std::ops::Deref for Client {
    type Target = Arc<StreamConsumer>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("not closed yet")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(close_detached(client));
        }
    }
}

/// Drops `client` on a detached thread once that thread holds the only reference, so that
/// the close runs there and nowhere else (the lag task and its blocking calls let go of
/// theirs within seconds).
fn close_detached(client: Arc<StreamConsumer>) -> oneshot::Receiver<()> {
    let (closed, receiver) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            let mut client = client;
            loop {
                match Arc::try_unwrap(client) {
                    Ok(only) => {
                        drop(only);
                        let _ = closed.send(());
                        return;
                    }
                    Err(shared) => client = shared,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "no thread to close a Kafka consumer on");
    }
    receiver
}

async fn connect(state: &AppState, group: &str) -> anyhow::Result<StreamConsumer> {
    let config = &state.config.events;
    kafka::ensure_topic(config).await?;
    let client = kafka::consumer(config, group)?;
    client.subscribe(&[&config.topic])?;
    Ok(client)
}

/// Events applied in one transaction at most: whatever has arrived, up to this many.
const MAX_BATCH: usize = 256;

async fn consume(
    state: &AppState,
    client: &StreamConsumer,
    consumer: Consumer,
    shutdown: &CancellationToken,
) {
    loop {
        let first = tokio::select! {
            message = client.recv() => message,
            _ = shutdown.cancelled() => return,
        };
        // Whatever else is already here joins the batch: one commit for all of them keeps up
        // with a busy topic, and costs nothing when events come one at a time.
        let mut received = vec![first];
        while received.len() < MAX_BATCH {
            match client.recv().now_or_never() {
                Some(message) => received.push(message),
                None => break,
            }
        }
        let mut messages = Vec::with_capacity(received.len());
        for message in received {
            match message {
                Ok(message) => messages.push(message),
                Err(error) => {
                    metrics::counter!("events_consumer_errors_total", "consumer" => consumer.name())
                        .increment(1);
                    tracing::warn!(consumer = consumer.name(), %error, "receiving");
                }
            }
        }
        if messages.is_empty() {
            pause(shutdown, Duration::from_millis(200)).await;
            continue;
        }
        if !handle_batch(state, consumer, &messages, shutdown).await {
            // Shutting down mid-batch: its offsets stay where they were.
            return;
        }
        for message in &messages {
            if let Err(error) = client.store_offset_from_message(message) {
                tracing::warn!(consumer = consumer.name(), %error, "storing an offset");
            }
        }
    }
}

/// Applies a batch of messages in one transaction, retrying while the database is
/// unavailable. Should one event fail for another reason, the batch is applied one event at a
/// time, so that only that event is set aside. True when every message is done with.
async fn handle_batch(
    state: &AppState,
    consumer: Consumer,
    messages: &[BorrowedMessage<'_>],
    shutdown: &CancellationToken,
) -> bool {
    let mut events = Vec::with_capacity(messages.len());
    for message in messages {
        match parse(message) {
            Ok(event) => events.push(event),
            Err(error) => set_aside(state, consumer, message, &error).await,
        }
    }
    if events.is_empty() {
        return true;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        match apply_all(state, consumer, &events).await {
            Ok(fresh) => {
                record(consumer, &events, &fresh);
                return true;
            }
            Err(error) if is_unavailable(&error) => {
                tracing::warn!(consumer = consumer.name(), %error, "applying; will retry");
                if !pause(shutdown, backoff).await {
                    return false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                tracing::warn!(consumer = consumer.name(), %error, "a batch failed; applying its events one by one");
                for message in messages {
                    if !handle(state, consumer, message, shutdown).await {
                        return false;
                    }
                }
                return true;
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
        match apply_all(state, consumer, std::slice::from_ref(&event)).await {
            Ok(fresh) => {
                record(consumer, std::slice::from_ref(&event), &fresh);
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

/// Counts applied and duplicate events, and how long applied ones took since they happened.
fn record(consumer: Consumer, events: &[OrderEvent], fresh: &[bool]) {
    let now = OffsetDateTime::now_utc();
    for (event, &applied) in events.iter().zip(fresh) {
        let outcome = if applied { "applied" } else { "duplicate" };
        metrics::counter!("events_consumed_total", "consumer" => consumer.name(), "outcome" => outcome)
            .increment(1);
        if applied {
            let age = now - event.occurred_at;
            metrics::histogram!("events_consumer_latency_seconds", "consumer" => consumer.name())
                .record(age.as_seconds_f64().max(0.0));
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

/// In one transaction: record each event as processed by `consumer` and apply those that
/// were new. For each event, whether it was new (false: applied before).
async fn apply_all(
    state: &AppState,
    consumer: Consumer,
    events: &[OrderEvent],
) -> Result<Vec<bool>, ApiError> {
    let mut tx = state.db.write.begin().await?;
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        let new = sqlx::query!(
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
        if new {
            consumer.apply(&mut tx, event).await?;
        }
        fresh.push(new);
    }
    tx.commit().await?;
    let catalog_changed = events
        .iter()
        .zip(&fresh)
        .any(|(event, &new)| new && consumer.changes_catalog(event));
    if catalog_changed {
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
