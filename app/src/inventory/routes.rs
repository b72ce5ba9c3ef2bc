//! Handlers of `/inventory` and `/warehouses` (staff only).

use axum::{extract::State, http::StatusCode};

use super::{
    ledger,
    model::{
        AdjustRequest, LowStock, LowStockQuery, MovementPage, MovementQuery, NewWarehouse,
        RestockRequest, VariantStock, Warehouse,
    },
    repo::{self, After},
};
use crate::{
    auth::Staff,
    error::{ApiError, ApiResult, Json, Path, Problem, Query},
    state::AppState,
};

/// Stock of a variant
///
/// On hand, reserved and available units in every warehouse that holds the variant, with
/// totals. A variant never stocked has no warehouses.
#[utoipa::path(
    get,
    path = "/inventory/variants/{variant_id}",
    tag = "inventory",
    params(("variant_id" = i64, Path, description = "Variant id")),
    responses(
        (status = 200, body = VariantStock),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such variant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn variant_stock(
    State(state): State<AppState>,
    _staff: Staff,
    Path(variant_id): Path<i64>,
) -> ApiResult<Json<VariantStock>> {
    let mut conn = state.db.write.acquire().await?;
    repo::variant_stock(&mut conn, variant_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("variant"))
}

/// Receive goods
///
/// Adds units on hand in a warehouse (the stock row is created on first delivery) and
/// records a `restock` movement. Answers the variant's stock afterwards.
#[utoipa::path(
    post,
    path = "/inventory/restock",
    tag = "inventory",
    request_body = RestockRequest,
    responses(
        (status = 200, description = "The variant's stock after the delivery", body = VariantStock),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "A quantity out of range, a blank reason, or no such variant or warehouse", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn restock(
    State(state): State<AppState>,
    Staff(staff): Staff,
    Json(body): Json<RestockRequest>,
) -> ApiResult<Json<VariantStock>> {
    let body = body.checked()?;
    let mut tx = state.db.write.begin().await?;
    repo::check_references(&mut tx, body.variant_id, body.warehouse_id).await?;
    ledger::restock(
        &mut tx,
        body.variant_id,
        body.warehouse_id,
        body.quantity,
        staff.id,
        body.reason.as_deref(),
    )
    .await?;
    let stock = repo::variant_stock(&mut tx, body.variant_id)
        .await?
        .ok_or(ApiError::NotFound("variant"))?;
    tx.commit().await?;
    Ok(Json(stock))
}

/// Correct the count
///
/// Adds or removes units on hand (breakage, loss, a stocktake) with a required reason, and
/// records an `adjust` movement. On-hand can never drop below the units reserved for
/// orders: that is 409 `insufficient_stock`.
#[utoipa::path(
    post,
    path = "/inventory/adjust",
    tag = "inventory",
    request_body = AdjustRequest,
    responses(
        (status = 200, description = "The variant's stock after the correction", body = VariantStock),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "The variant was never stocked in this warehouse", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`: fewer units would be on hand than are reserved", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "A delta of 0 or out of range, a blank reason, or no such variant or warehouse", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn adjust(
    State(state): State<AppState>,
    Staff(staff): Staff,
    Json(body): Json<AdjustRequest>,
) -> ApiResult<Json<VariantStock>> {
    let body = body.checked()?;
    let mut tx = state.db.write.begin().await?;
    repo::check_references(&mut tx, body.variant_id, body.warehouse_id).await?;
    ledger::adjust(
        &mut tx,
        body.variant_id,
        body.warehouse_id,
        body.delta,
        staff.id,
        &body.reason,
    )
    .await?;
    let stock = repo::variant_stock(&mut tx, body.variant_id)
        .await?
        .ok_or(ApiError::NotFound("variant"))?;
    tx.commit().await?;
    Ok(Json(stock))
}

/// Low stock
///
/// Stock rows whose available units (on hand minus reserved) are at or below their
/// low-stock threshold, the emptiest first.
#[utoipa::path(
    get,
    path = "/inventory/low-stock",
    tag = "inventory",
    params(LowStockQuery),
    responses(
        (status = 200, body = Vec<LowStock>),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 422, description = "A limit out of range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn low_stock(
    State(state): State<AppState>,
    _staff: Staff,
    Query(query): Query<LowStockQuery>,
) -> ApiResult<Json<Vec<LowStock>>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(repo::low_stock(&mut conn, limit).await?))
}

/// Stock movements
///
/// The append-only ledger, newest first: every reservation, commitment, release, restock
/// and adjustment. For each variant and warehouse the movements sum to the stock row.
#[utoipa::path(
    get,
    path = "/inventory/movements",
    tag = "inventory",
    params(MovementQuery),
    responses(
        (status = 200, body = MovementPage),
        (status = 400, description = "Bad query or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 422, description = "A limit out of range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn movements(
    State(state): State<AppState>,
    _staff: Staff,
    Query(query): Query<MovementQuery>,
) -> ApiResult<Json<MovementPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let after = query.cursor.as_deref().map(After::decode).transpose()?;
    let mut conn = state.db.write.acquire().await?;
    // One more than asked tells whether there is a next page.
    let mut items = repo::movements(
        &mut conn,
        query.variant_id,
        query.warehouse_id,
        after,
        limit + 1,
    )
    .await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|m| After(m.id).encode())
    } else {
        None
    };
    Ok(Json(MovementPage { items, next_cursor }))
}

/// Warehouses
#[utoipa::path(
    get,
    path = "/warehouses",
    tag = "inventory",
    responses(
        (status = 200, description = "Every warehouse, by id", body = Vec<Warehouse>),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn list_warehouses(
    State(state): State<AppState>,
    _staff: Staff,
) -> ApiResult<Json<Vec<Warehouse>>> {
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(repo::warehouses(&mut conn).await?))
}

/// Add a warehouse
#[utoipa::path(
    post,
    path = "/warehouses",
    tag = "inventory",
    request_body = NewWarehouse,
    responses(
        (status = 201, body = Warehouse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 409, description = "`warehouse_code_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "A bad code or name", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["staff"]))
)]
pub async fn create_warehouse(
    State(state): State<AppState>,
    _staff: Staff,
    Json(body): Json<NewWarehouse>,
) -> ApiResult<(StatusCode, Json<Warehouse>)> {
    let body = body.checked()?;
    let mut conn = state.db.write.acquire().await?;
    Ok((
        StatusCode::CREATED,
        Json(repo::create_warehouse(&mut conn, &body.code, &body.name).await?),
    ))
}
