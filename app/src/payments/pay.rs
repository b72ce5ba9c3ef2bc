//! Paying an order with a stored card, and the order's payment history.

use axum::extract::State;
use uuid::Uuid;

use super::{
    gateway::{ChargeOutcome, GatewayError},
    idempotency::charge_key,
    methods::gateway_unavailable,
    model::{PayRequest, Payment, PaymentResult, PaymentStatus},
    repo::{self, NewPayment},
    settle::settle,
};
use crate::{
    auth::AuthUser,
    error::{ApiError, ApiResult, Json, Path},
    orders::OrderStatus,
    state::AppState,
};

/// Pay an order
///
/// Charges one of the customer's stored cards the order total. The order must be
/// `pending_payment`. The gateway call carries an idempotency key derived from the order and
/// the card, so retrying after a timeout or a 503 never charges twice.
///
/// - Success: the payment is recorded, the order becomes `paid` (its reserved stock is
///   committed) and the confirmation email is queued, all in one transaction.
/// - Decline: a `failed` payment with its `failure_code` is recorded and the order stays
///   `pending_payment`; the answer is 402 `payment_declined` naming the code in `detail`.
///   Paying again with the same card repeats the decline; use another card.
/// - Gateway unavailable: 503 `gateway_unavailable` with `Retry-After`; nothing is recorded
///   (the gateway guarantees no charge happened).
///
/// Concurrent calls for one order are applied one after another: the second waits for the
/// first and then answers 409 `order_not_payable` if it succeeded.
#[utoipa::path(
    post,
    path = "/orders/{id}/pay",
    tag = "payments",
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = PayRequest,
    responses(
        (status = 200, description = "Paid", body = PaymentResult),
        (status = 400, description = "Malformed JSON or id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 402, description = "`payment_declined`: the card was declined", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the signed-in user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_payable`: the order is not awaiting payment", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "No such payment method of the signed-in user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`gateway_unavailable`: nothing was charged; retry after `Retry-After` seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn pay_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(order_id): Path<Uuid>,
    Json(body): Json<PayRequest>,
) -> ApiResult<Json<PaymentResult>> {
    let mut tx = state.db.write.begin().await?;
    // The order lock is held across the gateway call: a concurrent pay of this order waits
    // here and then sees the outcome, so one order is never charged twice.
    let order = repo::lock_order(&mut tx, order_id)
        .await?
        .filter(|order| order.user_id == user.id)
        .ok_or(ApiError::NotFound("order"))?;
    if order.status != OrderStatus::PendingPayment {
        return Err(ApiError::conflict(
            "order_not_payable",
            format!(
                "the order is {}; only orders awaiting payment can be paid",
                order.status
            ),
        ));
    }
    let method = repo::lock_method(&mut tx, body.payment_method_id, user.id)
        .await?
        .ok_or_else(|| ApiError::invalid("/payment_method_id", "no such payment method"))?;

    let key = charge_key(order_id, method.id);
    let outcome = state
        .gateway
        .charge(&method.gateway_token, order.total, key)
        .await;
    let attempt = |reference, status, failure_code| NewPayment {
        order_id,
        payment_method_id: Some(method.id),
        gateway: state.gateway.name(),
        gateway_reference: reference,
        amount: order.total,
        status,
        failure_code,
    };
    let (payment, declined): (Payment, Option<String>) = match &outcome {
        Ok(ChargeOutcome::Succeeded { reference }) => {
            let payment = repo::record_payment(
                &mut tx,
                attempt(Some(reference), PaymentStatus::Succeeded, None),
            )
            .await?;
            settle(
                &mut tx,
                order_id,
                payment.id,
                order.total,
                Some(user.id),
                "payment succeeded",
            )
            .await?;
            (payment, None)
        }
        Ok(ChargeOutcome::Declined { reference, code }) => {
            let failed = attempt(Some(reference), PaymentStatus::Failed, Some(code));
            (
                repo::record_payment(&mut tx, failed).await?,
                Some(code.clone()),
            )
        }
        // The gateway no longer accepts the stored card: a decline of our own making.
        Err(GatewayError::InvalidCard { .. }) => {
            let failed = attempt(None, PaymentStatus::Failed, Some("invalid_card"));
            (
                repo::record_payment(&mut tx, failed).await?,
                Some("invalid_card".to_owned()),
            )
        }
        Err(GatewayError::Transient) => return Err(gateway_unavailable()),
    };
    tx.commit().await?;
    match declined {
        Some(code) => Err(ApiError::PaymentRequired {
            code: "payment_declined",
            detail: format!("the card was declined ({code}); the order is still awaiting payment"),
        }),
        None => Ok(Json(PaymentResult {
            payment,
            order_status: OrderStatus::Paid,
        })),
    }
}

/// List an order's payments
///
/// Every attempt, oldest first. For the order's owner or staff.
#[utoipa::path(
    get,
    path = "/orders/{id}/payments",
    tag = "payments",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order's payments", body = Vec<Payment>),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such order (or not the signed-in customer's)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_order_payments(
    State(state): State<AppState>,
    user: AuthUser,
    Path(order_id): Path<Uuid>,
) -> ApiResult<Json<Vec<Payment>>> {
    let mut conn = state.db.write.acquire().await?;
    let owner = repo::order_owner(&mut conn, order_id).await?;
    if owner.is_none() || (owner != Some(user.id) && !user.is_staff()) {
        return Err(ApiError::NotFound("order"));
    }
    Ok(Json(repo::list_for_order(&mut conn, order_id).await?))
}
