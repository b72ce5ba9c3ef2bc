//! Staff refunds of paid orders.

use axum::extract::State;
use uuid::Uuid;

use super::{
    gateway::GatewayError,
    idempotency::refund_key,
    methods::gateway_unavailable,
    model::{PaymentResult, PaymentStatus},
    repo,
};
use crate::{
    auth::Staff,
    error::Json,
    error::{ApiError, ApiResult, Path},
    orders::{transition::transition, OrderStatus},
    state::AppState,
};

/// Refund an order (staff)
///
/// Refunds the order's successful payment in full at the gateway, marks it `refunded` and
/// moves the order to `refunded`, in one transaction. Refunding a `paid` or `fulfilling`
/// order puts its committed stock back on hand; a `delivered` order's goods are not
/// restocked. Other orders cannot be refunded (409 `order_not_refundable`).
#[utoipa::path(
    post,
    path = "/orders/{id}/refund",
    tag = "payments",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Refunded", body = PaymentResult),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such order", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_refundable` (not paid, fulfilling or delivered), `no_payment` or `refund_rejected`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`gateway_unavailable`: nothing was refunded; retry after `Retry-After` seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn refund_order(
    State(state): State<AppState>,
    Staff(staff): Staff,
    Path(order_id): Path<Uuid>,
) -> ApiResult<Json<PaymentResult>> {
    let mut tx = state.db.write.begin().await?;
    let order = repo::lock_order(&mut tx, order_id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    if !order.status.can_become(OrderStatus::Refunded) {
        return Err(ApiError::conflict(
            "order_not_refundable",
            format!(
                "the order is {}; only paid, fulfilling or delivered orders can be refunded",
                order.status
            ),
        ));
    }
    let no_payment = || {
        ApiError::conflict(
            "no_payment",
            "the order has no successful payment to refund",
        )
    };
    let payment = repo::lock_succeeded(&mut tx, order_id)
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
        Err(GatewayError::Transient) => return Err(gateway_unavailable()),
        Err(GatewayError::InvalidCard { message, .. }) => {
            return Err(ApiError::conflict(
                "refund_rejected",
                format!("the gateway refused the refund: {message}"),
            ))
        }
    }
    let payment = repo::set_status(&mut tx, payment.id, PaymentStatus::Refunded, None).await?;
    transition(
        &mut tx,
        order_id,
        OrderStatus::Refunded,
        Some(staff.id),
        Some("refunded by staff"),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(PaymentResult {
        payment,
        order_status: OrderStatus::Refunded,
    }))
}
