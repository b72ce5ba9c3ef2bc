//! Gauges sampled periodically for dashboards and autoscaling: messages waiting in every
//! work and dead-letter queue (a passive declare reads the count without touching them), and
//! outbox rows not yet published.

use std::time::Duration;

use lapin::{options::QueueDeclareOptions, types::FieldTable};
use tokio::sync::watch;

use super::{
    topology::{self, Broker},
    Queue,
};
use crate::state::AppState;

pub async fn sample_depths(
    state: AppState,
    broker: Broker,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let every = Duration::from_millis(state.config.jobs.depth_interval_ms);
    let mut connection: Option<lapin::Connection> = None;
    while !*stop.borrow() {
        if let Err(e) = sample(&state, &broker, &mut connection).await {
            tracing::debug!(error = format!("{e:#}"), "sampling queue depths");
            connection = None;
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if let Some(c) = connection {
        let _ = c.close(200, "worker stopping".into()).await;
    }
    Ok(())
}

async fn sample(
    state: &AppState,
    broker: &Broker,
    connection: &mut Option<lapin::Connection>,
) -> anyhow::Result<()> {
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_outbox WHERE published_at IS NULL")
            .fetch_one(&state.db.write)
            .await?;
    metrics::gauge!("jobs_outbox_pending").set(pending as f64);
    if connection.as_ref().is_none_or(|c| !c.status().connected()) {
        *connection = Some(broker.connect("metrics", Duration::from_secs(5)).await?);
    }
    let channel = connection
        .as_ref()
        .expect("set above")
        .create_channel()
        .await?;
    for queue in Queue::ALL {
        for name in [queue.name().to_owned(), topology::dlq(queue)] {
            let declared = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            metrics::gauge!("jobs_queue_depth", "queue" => name.clone())
                .set(declared.message_count() as f64);
            metrics::gauge!("jobs_queue_consumers", "queue" => name)
                .set(declared.consumer_count() as f64);
        }
    }
    let _ = channel.close(200, "sampled".into()).await;
    Ok(())
}
