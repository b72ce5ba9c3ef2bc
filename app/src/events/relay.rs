//! The outbox relay: publishes unpublished order events to Kafka in outbox order, keyed by
//! order id, and marks them published once Kafka acknowledged them.
//!
//! Several workers may run it; a PostgreSQL advisory lock lets one publish at a time and the
//! others wait to take over. A crash between publishing and marking republishes those events
//! on the next round: consumers see them twice and apply them once.

use std::time::{Duration, Instant};

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use sqlx::{postgres::PgListener, Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{kafka, EventsConfig};
use crate::db::Db;

/// The advisory lock key of the relay (an arbitrary constant, "outbox" in ASCII).
const RELAY_LOCK: i64 = 0x6f75_7462_6f78;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publishing event {seq}: {error}")]
    Publish {
        seq: i64,
        error: rdkafka::error::KafkaError,
    },
}

struct Pending {
    seq: i64,
    order_id: Uuid,
    kind: String,
    payload: String,
}

/// Relays until `shutdown`, restarting after any failure (a lost database connection, a
/// broker that is down) with a short pause.
pub async fn run(db: Db, config: EventsConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let producer = kafka::producer(&config)?;
    // The series exists from the start, so a dashboard shows 0 rather than nothing.
    metrics::counter!("events_published_total").increment(0);
    while !shutdown.is_cancelled() {
        if let Err(error) = kafka::ensure_topic(&config).await {
            tracing::warn!(%error, "relay: the topic is not ready; retrying");
        } else {
            match lead(&db, &producer, &config, &shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    metrics::counter!("events_relay_errors_total").increment(1);
                    tracing::warn!(%error, "relay: restarting");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    Ok(())
}

/// Takes the relay lock, then publishes until `shutdown` or a failure. The lock lives as
/// long as `conn`, which is dropped (and the lock released) on return.
async fn lead(
    db: &Db,
    producer: &FutureProducer,
    config: &EventsConfig,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let mut conn = db.write.acquire().await?.detach();
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    tracing::info!("relay: publishing the outbox");
    let mut listener = PgListener::connect_with(&db.write).await?;
    listener.listen("order_events").await?;
    let poll = Duration::from_millis(config.relay_poll_ms);
    loop {
        let batch = unpublished(&mut conn, config.relay_batch).await?;
        if batch.is_empty() {
            tokio::select! {
                notified = listener.recv() => { notified?; }
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => break,
            }
            continue;
        }
        let started = Instant::now();
        publish(producer, &config.topic, &batch).await?;
        let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
        sqlx::query!(
            "UPDATE order_events SET published_at = now() WHERE seq = ANY($1)",
            &seqs
        )
        .execute(&mut conn)
        .await?;
        metrics::counter!("events_published_total").increment(batch.len() as u64);
        metrics::histogram!("events_relay_batch_seconds").record(started.elapsed().as_secs_f64());
    }
    conn.close().await?;
    Ok(())
}

async fn unpublished(conn: &mut PgConnection, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT seq, order_id, type, payload::text AS \"payload!\"
         FROM order_events WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Pending {
            seq: r.seq,
            order_id: r.order_id,
            kind: r.r#type,
            payload: r.payload,
        })
        .collect())
}

/// Hands the whole batch to the producer in outbox order, then waits until Kafka
/// acknowledged every event. The idempotent producer keeps that order within a partition.
async fn publish(
    producer: &FutureProducer,
    topic: &str,
    batch: &[Pending],
) -> Result<(), RelayError> {
    let mut deliveries = Vec::with_capacity(batch.len());
    for event in batch {
        let key = event.order_id.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some(event.kind.as_str()),
        });
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(event.payload.as_str())
            .headers(headers);
        // The producer's queue is full: wait for room rather than reorder.
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((error, returned)) => {
                    if !matches!(
                        error,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        return Err(RelayError::Publish {
                            seq: event.seq,
                            error,
                        });
                    }
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        deliveries.push((event.seq, delivery));
    }
    for (seq, delivery) in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(RelayError::Publish { seq, error }),
            Err(_cancelled) => {
                return Err(RelayError::Publish {
                    seq,
                    error: rdkafka::error::KafkaError::Canceled,
                })
            }
        }
    }
    Ok(())
}
