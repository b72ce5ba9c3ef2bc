//! Handlers of `/users/me/addresses`.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    model::{Address, AddressPatch, Defaults, NewAddress, MAX_ADDRESSES},
    repo,
    snapshot::AddressKind,
};
use crate::{
    auth::AuthUser,
    error::{ApiError, ApiResult, Json, Path},
    state::AppState,
};

/// Gives `id` the defaults it is to hold, taking them from the user's other addresses.
async fn claim_defaults(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    id: Uuid,
    defaults: Defaults,
) -> ApiResult<()> {
    if defaults.shipping {
        repo::clear_default(conn, user_id, AddressKind::Shipping, id).await?;
    }
    if defaults.billing {
        repo::clear_default(conn, user_id, AddressKind::Billing, id).await?;
    }
    Ok(())
}

/// The signed-in user's addresses, oldest first.
#[utoipa::path(
    get,
    path = "/users/me/addresses",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The address book", body = Vec<Address>),
        (status = 401, response = crate::error::responses::Unauthenticated),
    )
)]
pub async fn list_addresses(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<Address>>> {
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(repo::list(&mut conn, user.id).await?))
}

/// Adds an address (at most 20 per account).
#[utoipa::path(
    post,
    path = "/users/me/addresses",
    tag = "users",
    security(("bearer" = [])),
    request_body = NewAddress,
    responses(
        (status = 201, description = "The new address", body = Address),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 409, description = "`too_many_addresses`: the address book is full", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_address(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewAddress>,
) -> ApiResult<(StatusCode, Json<Address>)> {
    let (fields, defaults) = body.parse()?;
    let mut tx = state.db.write.begin().await?;
    repo::lock_owner(&mut tx, user.id).await?;
    if repo::count(&mut tx, user.id).await? >= MAX_ADDRESSES {
        return Err(ApiError::conflict(
            "too_many_addresses",
            format!("an account keeps at most {MAX_ADDRESSES} addresses; delete one first"),
        ));
    }
    let id = Uuid::now_v7();
    claim_defaults(&mut tx, user.id, id, defaults).await?;
    let address = repo::insert(&mut tx, user.id, id, &fields, defaults).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(address)))
}

/// One address of the signed-in user.
#[utoipa::path(
    get,
    path = "/users/me/addresses/{id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    responses(
        (status = 200, description = "The address", body = Address),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such address in this account", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_address(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Address>> {
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(repo::find(&mut conn, user.id, id).await?))
}

/// Changes an address. Absent fields stay; `null` clears an optional one.
#[utoipa::path(
    patch,
    path = "/users/me/addresses/{id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    request_body = AddressPatch,
    responses(
        (status = 200, description = "The address as changed", body = Address),
        (status = 400, description = "Unreadable JSON or an id that is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such address in this account", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid or unknown fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_address(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(patch): Json<AddressPatch>,
) -> ApiResult<Json<Address>> {
    let mut tx = state.db.write.begin().await?;
    repo::lock_owner(&mut tx, user.id).await?;
    let current = repo::find(&mut tx, user.id, id).await?;
    let (fields, defaults) = patch.apply(&current)?;
    claim_defaults(&mut tx, user.id, id, defaults).await?;
    let address = repo::update(&mut tx, user.id, id, &fields, defaults).await?;
    tx.commit().await?;
    Ok(Json(address))
}

/// Deletes an address. Orders keep their own copy of the addresses they were sent to.
#[utoipa::path(
    delete,
    path = "/users/me/addresses/{id}",
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such address in this account", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_address(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut conn = state.db.write.acquire().await?;
    if repo::delete(&mut conn, user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("address"))
    }
}
