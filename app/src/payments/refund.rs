//! Staff refunds of paid orders: at once when the gateway answers; queued as a job (see
//! `jobs::refund`) when it is briefly unavailable and a job broker is configured.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    gateway::GatewayError,
    idempotency::refund_key,
    methods::gateway_unavailable,
    model::{Payment, PaymentResult, PaymentStatus},
    repo,
};
use crate::{
    auth::Staff,
    error::Json,
    error::{ApiError, ApiResult, Path},
    orders::{transition::transition, OrderStatus},
    state::AppState,
};

/// The refund will be made by a background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundQueued {
    pub order_id: Uuid,
    /// The order's status, unchanged until the job refunds it (then `refunded`).
    pub order_status: OrderStatus,
    /// The job's key (`refund:<order id>`); asking again queues nothing more.
    pub job: String,
}

/// What a refund attempt came to.
pub(crate) enum Attempt {
    Refunded(Payment),
    /// The order is refunded already (by an earlier attempt or a webhook): nothing to do.
    AlreadyRefunded,
    /// The gateway was briefly unavailable; nothing happened.
    GatewayUnavailable,
}

/// In the caller's transaction: locks the order, refunds its successful payment at the
/// gateway (idempotently: the gateway's key is derived from the payment), marks the payment
/// refunded and moves the order to `refunded`. The caller commits.
pub(crate) async fn attempt(
    state: &AppState,
    conn: &mut PgConnection,
    order_id: Uuid,
    actor: Option<Uuid>,
    note: &str,
    from_job: bool,
) -> Result<Attempt, ApiError> {
    let order = repo::lock_order(&mut *conn, order_id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    // A job finding its work done is a success; staff asking twice is a conflict.
    if from_job && order.status == OrderStatus::Refunded {
        return Ok(Attempt::AlreadyRefunded);
    }
    if !order.status.can_become(OrderStatus::Refunded) {
        return Err(not_refundable(order.status));
    }
    let no_payment = || {
        ApiError::conflict(
            "no_payment",
            "the order has no successful payment to refund",
        )
    };
    let payment = repo::lock_succeeded(&mut *conn, order_id)
        .await?
        .ok_or_else(no_payment)?;
    let reference = payment
        .gateway_reference
        .as_deref()
        .ok_or_else(no_payment)?;
    match state
        .gateway
        .refund(reference, payment.amount, refund_key(payment.id))
        .await
    {
        Ok(()) => {}
        Err(GatewayError::Transient) => return Ok(Attempt::GatewayUnavailable),
        Err(GatewayError::InvalidCard { message, .. }) => {
            return Err(ApiError::conflict(
                "refund_rejected",
                format!("the gateway refused the refund: {message}"),
            ))
        }
    }
    let payment = repo::set_status(&mut *conn, payment.id, PaymentStatus::Refunded, None).await?;
    transition(
        &mut *conn,
        order_id,
        OrderStatus::Refunded,
        actor,
        Some(note),
    )
    .await?;
    Ok(Attempt::Refunded(payment))
}

fn not_refundable(status: OrderStatus) -> ApiError {
    ApiError::conflict(
        "order_not_refundable",
        format!("the order is {status}; only paid, fulfilling or delivered orders can be refunded"),
    )
}

/// Refund an order (staff)
///
/// Refunds the order's successful payment in full at the gateway, marks it `refunded` and
/// moves the order to `refunded`, in one transaction. Refunding a `paid` or `fulfilling`
/// order puts its committed stock back on hand; a `delivered` order's goods are not
/// restocked. Other orders cannot be refunded (409 `order_not_refundable`).
///
/// When the gateway is briefly unavailable and the shop runs background jobs, the refund is
/// queued instead (202): a job retries it with backoff until the gateway answers, then
/// refunds exactly once and moves the order to `refunded`. Asking again while the job waits
/// tries the gateway again: 200 if it answers now (the job then finds the order refunded and
/// stops), else 202 without a second job. Without background jobs the answer is 503.
#[utoipa::path(
    post,
    path = "/orders/{id}/refund",
    tag = "payments",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Refunded", body = PaymentResult),
        (status = 202, description = "The gateway is briefly unavailable: the refund is queued and will be made by a background job", body = RefundQueued),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such order", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_refundable` (not paid, fulfilling or delivered), `no_payment` or `refund_rejected`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`gateway_unavailable` (only when the shop runs no background jobs): nothing was refunded; retry after `Retry-After` seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn refund_order(
    State(state): State<AppState>,
    Staff(staff): Staff,
    Path(order_id): Path<Uuid>,
) -> ApiResult<Response> {
    let mut tx = state.db.write.begin().await?;
    let outcome = attempt(
        &state,
        &mut tx,
        order_id,
        Some(staff.id),
        "refunded by staff",
        false,
    )
    .await?;
    match outcome {
        Attempt::Refunded(payment) => {
            tx.commit().await?;
            Ok(Json(PaymentResult {
                payment,
                order_status: OrderStatus::Refunded,
            })
            .into_response())
        }
        Attempt::AlreadyRefunded => Err(not_refundable(OrderStatus::Refunded)),
        Attempt::GatewayUnavailable => {
            if state.config.jobs.amqp_url.is_none() {
                return Err(gateway_unavailable());
            }
            let job = crate::jobs::enqueue_refund(&mut tx, order_id, staff.id).await?;
            let order_status = repo::lock_order(&mut tx, order_id)
                .await?
                .ok_or(ApiError::NotFound("order"))?
                .status;
            tx.commit().await?;
            tracing::info!(%order_id, %job, "gateway unavailable: refund queued");
            Ok((
                StatusCode::ACCEPTED,
                Json(RefundQueued {
                    order_id,
                    order_status,
                    job,
                }),
            )
                .into_response())
        }
    }
}
