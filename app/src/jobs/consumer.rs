//! Consuming one work queue: up to `concurrency` jobs at once, each acknowledged only after
//! its work is done, or after it was handed on (with a confirm) to a retry queue or the
//! dead-letter queue.

use std::{sync::Arc, time::Instant};

use anyhow::Context;
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    Channel,
};
use tokio::{sync::watch, task::JoinSet};

use super::{
    email::Mailer,
    topology::{self, Broker, ATTEMPTS_HEADER, FIRST_FAILED_HEADER, LAST_ERROR_HEADER},
    Job, Queue, EMAIL_KIND, REFUND_KIND,
};
use crate::state::AppState;

/// Why a job did not succeed.
#[derive(Debug)]
pub enum JobError {
    /// Worth another attempt later (a server down, a timeout).
    Transient(String),
    /// Never going to work (a malformed job, a refused address): dead-lettered at once.
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Transient(format!("database: {e}"))
    }
}

/// What handlers can reach.
#[derive(Clone)]
pub struct JobContext {
    pub state: AppState,
    pub mailer: Mailer,
}

async fn perform(ctx: &JobContext, queue: Queue, job: &Job) -> Result<(), JobError> {
    match (queue, job.kind.as_str()) {
        (Queue::Emails, EMAIL_KIND) => super::email::perform(ctx, job).await,
        (Queue::Payments, REFUND_KIND) => super::refund::perform(ctx, job).await,
        _ => Err(JobError::Permanent(format!(
            "no handler for jobs of kind `{}` on queue {queue}",
            job.kind
        ))),
    }
}

pub async fn run(
    state: AppState,
    broker: Broker,
    queue: Queue,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ctx = JobContext {
        mailer: Mailer::new(&state.config.smtp).context("smtp configuration")?,
        state,
    };
    let delay = ctx.state.config.jobs.reconnect_delay();
    while !*stop.borrow() {
        match consume(&ctx, &broker, queue, &mut stop).await {
            Ok(()) => break,
            Err(error) => {
                metrics::counter!("jobs_consumer_errors_total", "queue" => queue.name())
                    .increment(1);
                tracing::warn!(%queue, error = format!("{error:#}"), "job consumer: reconnecting in {delay:?}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    Ok(())
}

/// Consumes until stopped (Ok) or until the connection fails (Err).
async fn consume(
    ctx: &JobContext,
    broker: &Broker,
    queue: Queue,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let settings = match queue {
        Queue::Emails => &ctx.state.config.jobs.emails,
        Queue::Payments => &ctx.state.config.jobs.payments,
    };
    let connection = broker
        .connect(queue.name(), std::time::Duration::from_secs(10))
        .await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let publisher = topology::confirm_channel(&connection).await?;
    let tag = format!("{}-{}", queue, uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            queue.name().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    tracing::info!(%queue, prefetch = settings.prefetch, concurrency = settings.concurrency, "consuming");
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let outcome: anyhow::Result<()> = loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.wait_for(|s| *s) => break Ok(()),
        };
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            _ = stop.wait_for(|s| *s) => break Ok(()),
        };
        match delivery {
            None => break Err(anyhow::anyhow!("the broker ended the consumer of {queue}")),
            Some(Err(e)) => break Err(e).context("the connection to the broker failed"),
            Some(Ok(delivery)) => {
                let (ctx, publisher) = (ctx.clone(), publisher.clone());
                in_flight.spawn(async move {
                    handle(&ctx, queue, &publisher, delivery).await;
                    drop(permit);
                });
            }
        }
        while in_flight.try_join_next().is_some() {}
    };
    if outcome.is_err() {
        // Their acks cannot reach the broker any more, which has requeued their messages;
        // let them finish on their own (handlers are idempotent).
        in_flight.detach_all();
        return outcome;
    }
    // Graceful stop: no new deliveries, then the jobs in flight get the grace period.
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    let grace = ctx.state.config.worker.shutdown_grace();
    let drained = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%queue, jobs = in_flight.len(), "jobs still running after the grace period; the broker requeues them");
        in_flight.abort_all();
    }
    // Closing hands every unacknowledged message back to the queue.
    let _ = connection.close(200, "worker stopping".into()).await;
    tracing::info!(%queue, "stopped consuming");
    Ok(())
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(&ShortString::from(name))
}

fn header_u32(delivery: &Delivery, name: &str) -> u32 {
    match header(delivery, name) {
        Some(AMQPValue::LongInt(v)) => (*v).max(0) as u32,
        Some(AMQPValue::LongLongInt(v)) => (*v).max(0) as u32,
        Some(AMQPValue::ShortInt(v)) => (*v).max(0) as u32,
        Some(AMQPValue::LongUInt(v)) => *v,
        _ => 0,
    }
}

enum Outcome {
    Done,
    /// Another attempt may work.
    Failed(String),
    /// No attempt will work.
    Poison(String),
}

async fn handle(ctx: &JobContext, queue: Queue, publisher: &Channel, delivery: Delivery) {
    let started = Instant::now();
    let outcome = match serde_json::from_slice::<Job>(&delivery.data) {
        Err(e) => Outcome::Poison(format!("not a job: {e}")),
        Ok(job) => {
            // In a task of its own, so a panic in a handler is a failed attempt, not a
            // message left unacknowledged until the connection closes.
            let (ctx2, job2) = (ctx.clone(), job.clone());
            match tokio::spawn(async move { perform(&ctx2, queue, &job2).await }).await {
                Ok(Ok(())) => Outcome::Done,
                Ok(Err(JobError::Transient(e))) => Outcome::Failed(e),
                Ok(Err(JobError::Permanent(e))) => Outcome::Poison(e),
                Err(e) => Outcome::Failed(format!("the job panicked: {e}")),
            }
        }
    };
    let label = queue.name();
    let key = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|k| k.to_string())
        .unwrap_or_default();
    let result = match outcome {
        Outcome::Done => {
            metrics::counter!("jobs_processed_total", "queue" => label).increment(1);
            metrics::histogram!("job_duration_seconds", "queue" => label, "outcome" => "done")
                .record(started.elapsed().as_secs_f64());
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(Into::into)
        }
        Outcome::Failed(error) => {
            metrics::counter!("jobs_failed_total", "queue" => label).increment(1);
            metrics::histogram!("job_duration_seconds", "queue" => label, "outcome" => "failed")
                .record(started.elapsed().as_secs_f64());
            let attempts = header_u32(&delivery, ATTEMPTS_HEADER) + 1;
            let jobs = &ctx.state.config.jobs;
            if attempts >= jobs.max_attempts {
                tracing::error!(%queue, %key, attempts, %error, "job failed for the last time: dead-lettered");
                dead_letter(publisher, &delivery, label, attempts, &error, "attempts").await
            } else {
                let delay = jobs.retry_delay_ms(attempts);
                tracing::warn!(%queue, %key, attempts, retry_in_ms = delay, %error, "job failed: retrying");
                metrics::counter!("jobs_retried_total", "queue" => label).increment(1);
                hand_on(
                    publisher,
                    &delivery,
                    "",
                    &topology::retry_queue(queue, delay),
                    attempts,
                    &error,
                )
                .await
            }
        }
        Outcome::Poison(error) => {
            metrics::counter!("jobs_failed_total", "queue" => label).increment(1);
            tracing::error!(%queue, %key, %error, "job cannot succeed: dead-lettered");
            let attempts = header_u32(&delivery, ATTEMPTS_HEADER) + 1;
            dead_letter(publisher, &delivery, label, attempts, &error, "poison").await
        }
    };
    if let Err(e) = result {
        // The broker keeps the message (unacknowledged) and redelivers it.
        tracing::warn!(%queue, %key, error = format!("{e:#}"), "could not settle a job; the broker will redeliver it");
        let _ = delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await;
    }
}

/// Publishes the job (confirmed) to a retry queue or the dead-letter queue with its
/// attempts and last error in headers, then acknowledges the original.
/// Hands the job to its queue's dead-letter queue, counted by `reason` (`attempts` or
/// `poison`).
async fn dead_letter(
    publisher: &Channel,
    delivery: &Delivery,
    queue: &'static str,
    attempts: u32,
    error: &str,
    reason: &'static str,
) -> anyhow::Result<()> {
    metrics::counter!("jobs_dead_lettered_total", "queue" => queue, "reason" => reason)
        .increment(1);
    hand_on(
        publisher,
        delivery,
        topology::DEAD_EXCHANGE,
        queue,
        attempts,
        error,
    )
    .await
}

async fn hand_on(
    publisher: &Channel,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    attempts: u32,
    error: &str,
) -> anyhow::Result<()> {
    let mut headers = FieldTable::default();
    if let Some(old) = delivery.properties.headers() {
        for (k, v) in old.inner() {
            // The broker's own dead-letter history grows with every retry; ours is enough.
            if !k.as_str().starts_with("x-death")
                && !k.as_str().starts_with("x-first-death")
                && !k.as_str().starts_with("x-last-death")
                && k.as_str() != "x-delivery-count"
                && k.as_str() != "x-acquired-count"
            {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    if !matches!(
        header(delivery, FIRST_FAILED_HEADER),
        Some(AMQPValue::LongLongInt(_))
    ) {
        headers.insert(FIRST_FAILED_HEADER.into(), AMQPValue::LongLongInt(now_ms));
    }
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongInt(attempts as i32));
    let error: String = error.chars().take(1000).collect();
    headers.insert(
        LAST_ERROR_HEADER.into(),
        AMQPValue::LongString(error.as_str().into()),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    topology::publish_confirmed(publisher, exchange, routing_key, &delivery.data, properties)
        .await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}
