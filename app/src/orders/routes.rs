//! Handlers of `/orders`: history, detail, cancellation and staff status changes.

use axum::extract::State;
use uuid::Uuid;

use super::{
    model::{Order, OrderListQuery, OrderPage, StatusRequest},
    repo::{self, After},
    transition::transition,
    OrderStatus,
};
use crate::{
    auth::{AuthUser, Staff},
    error::{ApiError, ApiResult, Json, Path, Query},
    state::AppState,
};

/// Order history
///
/// The signed-in user's orders, newest first. Staff may pass `all=true` for everyone's.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(OrderListQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "Bad query or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, description = "`all=true` without the staff role", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A limit out of range", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<OrderListQuery>,
) -> ApiResult<Json<OrderPage>> {
    if query.all && !user.is_staff() {
        return Err(ApiError::Forbidden);
    }
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let after = query.cursor.as_deref().map(After::decode).transpose()?;
    let owner = (!query.all).then_some(user.id);
    let mut conn = state.db.write.acquire().await?;
    // One more than asked tells whether there is a next page.
    let mut items = repo::list(&mut conn, owner, query.status, after, limit + 1).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|o| {
            After {
                created_at: o.created_at,
                id: o.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}

/// An order
///
/// The owner and staff see it; for anyone else it does not exist (404).
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = Order),
        (status = 400, description = "Malformed id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such order of yours", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Order>> {
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(
        repo::load_visible(&mut conn, id, user.id, user.is_staff()).await?,
    ))
}

/// Cancel an order
///
/// The owner cancels an order that is still awaiting payment; its reserved stock is
/// released. A paid order is refunded by staff instead.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Cancelled", body = Order),
        (status = 400, description = "Malformed id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such order of yours", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the order is past payment", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Order>> {
    let mut tx = state.db.write.begin().await?;
    let owner = sqlx::query_scalar!("SELECT user_id FROM orders WHERE id = $1", id)
        .fetch_optional(&mut *tx)
        .await?;
    if owner != Some(user.id) {
        return Err(ApiError::NotFound("order"));
    }
    transition(
        &mut tx,
        id,
        OrderStatus::Cancelled,
        Some(user.id),
        Some("cancelled by the customer"),
    )
    .await?;
    let order = repo::load(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    tx.commit().await?;
    Ok(Json(order))
}

/// Change an order's status (staff)
///
/// Any move the order life cycle allows: `pending_payment → paid | cancelled`,
/// `paid → fulfilling | refunded`, `fulfilling → shipped | refunded`, `shipped → delivered`,
/// `delivered → refunded`. Stock follows: paying commits the reservation, cancelling releases
/// it, refunding before shipment puts the units back on hand. Anything else is 409
/// `invalid_transition`.
#[utoipa::path(
    post,
    path = "/orders/{id}/status",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = StatusRequest,
    responses(
        (status = 200, body = Order),
        (status = 400, description = "Malformed JSON or id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such order", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Unknown status or a reason too long", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn set_status(
    State(state): State<AppState>,
    Staff(staff): Staff,
    Path(id): Path<Uuid>,
    Json(body): Json<StatusRequest>,
) -> ApiResult<Json<Order>> {
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(ApiError::invalid("/reason", "at most 500 characters"));
    }
    let mut tx = state.db.write.begin().await?;
    transition(
        &mut tx,
        id,
        body.status,
        Some(staff.id),
        body.reason.as_deref(),
    )
    .await?;
    let order = repo::load(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    tx.commit().await?;
    Ok(Json(order))
}
