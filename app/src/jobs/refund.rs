//! The payments job: a staff refund the gateway could not take at the time.
//!
//! Queued by `POST /orders/{id}/refund` when the gateway was briefly unavailable, keyed
//! `refund:<order id>`. The job repeats the refund with backoff until the gateway answers.
//! Once: the gateway call carries the refund's idempotency key (derived from the payment),
//! and the payment and order change in the same transaction that locks the order and finds
//! it not yet refunded, so a redelivered job finds the order refunded and stops.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    consumer::{JobContext, JobError},
    Job, Queue,
};
use crate::{
    error::ApiError,
    payments::refund::{attempt, Attempt},
};

pub const REFUND_KIND: &str = "refund";

#[derive(Serialize, Deserialize)]
struct RefundJob {
    order_id: Uuid,
    /// The staff member who asked, recorded in the order's history.
    actor_id: Option<Uuid>,
}

/// Queues the refund of `order_id` in the caller's transaction; returns the job's key.
/// Queueing it again (while it waits) does nothing.
pub async fn enqueue_refund(
    conn: &mut PgConnection,
    order_id: Uuid,
    actor_id: Uuid,
) -> Result<String, sqlx::Error> {
    let key = format!("refund:{order_id}");
    let payload = serde_json::to_value(RefundJob {
        order_id,
        actor_id: Some(actor_id),
    })
    .expect("serializable");
    super::enqueue(conn, Queue::Payments, REFUND_KIND, &key, payload).await?;
    Ok(key)
}

pub(super) async fn perform(ctx: &JobContext, job: &Job) -> Result<(), JobError> {
    let refund: RefundJob = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("not a refund job: {e}")))?;
    let state = &ctx.state;
    let mut tx = state.db.write.begin().await?;
    let outcome = attempt(
        state,
        &mut tx,
        refund.order_id,
        refund.actor_id,
        "refunded by staff (queued while the gateway was unavailable)",
        true,
    )
    .await
    .map_err(|e| match e {
        // A database outage or an unexpected error: worth another attempt.
        ApiError::Unavailable { .. } | ApiError::Internal(_) | ApiError::Timeout(_) => {
            JobError::Transient(format!("{e:#}"))
        }
        other => JobError::Permanent(format!("refund of order {}: {other}", refund.order_id)),
    })?;
    match outcome {
        Attempt::Refunded(payment) => {
            tx.commit().await?;
            tracing::info!(order_id = %refund.order_id, payment_id = %payment.id, "queued refund made");
            metrics::counter!("refunds_completed_total").increment(1);
            Ok(())
        }
        Attempt::AlreadyRefunded => Ok(()),
        Attempt::GatewayUnavailable => Err(JobError::Transient(
            "payment gateway temporarily unavailable".into(),
        )),
    }
}
