//! `app worker`: the background side of the shop. It relays the order-event outbox to Kafka
//! and runs the event consumers (`events`), and publishes and works the RabbitMQ job queues
//! (`jobs`), until asked to stop; then it lets work in flight finish (an event or job
//! interrupted mid-way is redelivered: its offset was never stored, its message never acked).

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    events::{consume, consumers::Consumer, relay},
    state::AppState,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Where the worker serves /metrics and /healthz.
    pub metrics_bind: SocketAddr,
    /// How long shutdown waits for work in flight.
    pub shutdown_grace_ms: u64,
    /// Sample the outbox backlog and other gauges this often.
    pub sample_ms: u64,
}

impl WorkerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            metrics_bind: SocketAddr::from(([127, 0, 0, 1], 9091)),
            shutdown_grace_ms: 20_000,
            sample_ms: 2_000,
        }
    }
}

/// Runs the relay and every consumer until `shutdown`, then waits up to the grace period
/// for them to finish.
pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let events = state.config.events.brokers.is_some();
    let jobs = state.config.jobs.amqp_url.is_some();
    anyhow::ensure!(
        events || jobs,
        "nothing to do: set events.brokers (APP_EVENTS__BROKERS) for the order events, \
         jobs.amqp_url (APP_JOBS__AMQP_URL) for the job queues, or both"
    );
    crate::http::metrics::install();
    let mut tasks = JoinSet::new();
    if events {
        tasks.spawn(relay::run(
            state.db.clone(),
            state.config.events.clone(),
            shutdown.clone(),
        ));
        for consumer in Consumer::ALL {
            for _ in 0..state.config.events.consumer_instances {
                tasks.spawn(consume::run(state.clone(), consumer, shutdown.clone()));
            }
        }
        tasks.spawn(sample(state.clone(), shutdown.clone()));
    } else {
        tracing::warn!("events.brokers is not set: order events stay in the outbox");
    }
    if jobs {
        tasks.spawn(crate::jobs::run(
            state.clone(),
            shutdown.clone().cancelled_owned(),
        ));
    } else {
        tracing::warn!(
            "jobs.amqp_url is not set: emails and queued refunds stay in the job outbox"
        );
    }

    let grace = state.config.worker.shutdown_grace();
    let mut result = Ok(());
    loop {
        let next = tokio::select! {
            next = tasks.join_next() => next,
            _ = shutdown.cancelled() => break,
        };
        match next {
            None => break,
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(error))) => {
                result = Err(error);
                shutdown.cancel();
                break;
            }
            Some(Err(panic)) => {
                result = Err(anyhow::anyhow!("a worker task failed: {panic}"));
                shutdown.cancel();
                break;
            }
        }
    }
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; work still in flight is redelivered later");
        tasks.abort_all();
    }
    result
}

/// Gauges an autoscaler can follow: events waiting in the outbox and how old the oldest is.
async fn sample(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let every = Duration::from_millis(state.config.worker.sample_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let backlog = sqlx::query!(
            r#"SELECT count(*) AS "count!",
                      coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS "oldest_s!"
               FROM order_events WHERE published_at IS NULL"#
        )
        .fetch_one(&state.db.write)
        .await;
        match backlog {
            Ok(row) => {
                metrics::gauge!("events_outbox_backlog").set(row.count as f64);
                metrics::gauge!("events_outbox_oldest_seconds").set(row.oldest_s);
            }
            Err(error) => tracing::debug!(%error, "sampling the outbox"),
        }
    }
}
