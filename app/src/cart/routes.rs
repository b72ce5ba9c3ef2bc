//! Handlers of `/cart`.

use axum::{extract::State, http::StatusCode};

use super::{
    model::{AddLine, AnonymousCart, Cart, SetQuantity, MAX_QUANTITY},
    repo, CartOwner,
};
use crate::{
    auth::token::opaque_token,
    error::{ApiError, ApiResult, Json, Path},
    state::AppState,
};

async fn current(state: &AppState, owner: &CartOwner) -> ApiResult<Json<Cart>> {
    let mut conn = state.db.write.acquire().await?;
    let lines = match repo::find(&mut conn, owner).await? {
        Some(cart_id) => repo::lines(&mut conn, cart_id).await?,
        None => Vec::new(),
    };
    Ok(Json(repo::view(&state.config.shop, lines)?))
}

fn check_quantity(quantity: i32, min: i32) -> ApiResult<()> {
    if (min..=MAX_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "/quantity",
            format!("must be {min} to {MAX_QUANTITY}"),
        ))
    }
}

/// The cart
///
/// The signed-in user's cart, or with `X-Cart-Token` (and no access token) an anonymous cart.
/// Totals are computed by the server from current prices; shipping is waived from the
/// shop's free-shipping threshold.
#[utoipa::path(
    get,
    path = "/cart",
    tag = "cart",
    params(("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart")),
    responses(
        (status = 200, body = Cart),
        (status = 401, description = "Neither an access token nor a cart token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The cart token names no cart", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_cart(State(state): State<AppState>, owner: CartOwner) -> ApiResult<Json<Cart>> {
    current(&state, &owner).await
}

/// Empty the cart
#[utoipa::path(
    delete,
    path = "/cart",
    tag = "cart",
    params(("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart")),
    responses(
        (status = 204, description = "Emptied"),
        (status = 401, description = "Neither an access token nor a cart token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The cart token names no cart", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn clear_cart(State(state): State<AppState>, owner: CartOwner) -> ApiResult<StatusCode> {
    let mut conn = state.db.write.acquire().await?;
    if let Some(cart_id) = repo::find(&mut conn, &owner).await? {
        repo::clear(&mut conn, cart_id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Start an anonymous cart
///
/// For visitors who have not signed in. Send the returned token as `X-Cart-Token`; signing
/// in (login or register) with that header merges the cart into the user's.
#[utoipa::path(
    post,
    path = "/cart/anonymous",
    tag = "cart",
    responses((status = 201, body = AnonymousCart)),
)]
pub async fn create_anonymous_cart(
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<AnonymousCart>)> {
    let (token, hash) = opaque_token();
    let mut conn = state.db.write.acquire().await?;
    repo::create_anonymous(&mut conn, &hash).await?;
    Ok((
        StatusCode::CREATED,
        Json(AnonymousCart { cart_token: token }),
    ))
}

/// Add to the cart
///
/// Adds units of a variant; a variant already in the cart gets its quantity increased.
#[utoipa::path(
    post,
    path = "/cart/lines",
    tag = "cart",
    params(("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart")),
    request_body = AddLine,
    responses(
        (status = 200, body = Cart),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Neither an access token nor a cart token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The cart token names no cart", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cart_full`: the cart has 100 lines", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "No such variant for sale, or a quantity out of range", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn add_line(
    State(state): State<AppState>,
    owner: CartOwner,
    Json(body): Json<AddLine>,
) -> ApiResult<Json<Cart>> {
    check_quantity(body.quantity, 1)?;
    let mut tx = state.db.write.begin().await?;
    let cart_id = repo::find_or_create(&mut tx, &owner).await?;
    repo::add(&mut tx, cart_id, body.variant_id, body.quantity).await?;
    let lines = repo::lines(&mut tx, cart_id).await?;
    tx.commit().await?;
    Ok(Json(repo::view(&state.config.shop, lines)?))
}

/// Change a line's quantity
///
/// A quantity of 0 removes the line.
#[utoipa::path(
    put,
    path = "/cart/lines/{variant_id}",
    tag = "cart",
    params(
        ("variant_id" = i64, Path, description = "The variant of the line"),
        ("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart"),
    ),
    request_body = SetQuantity,
    responses(
        (status = 200, body = Cart),
        (status = 400, description = "Malformed JSON or path", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Neither an access token nor a cart token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such line, or the cart token names no cart", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "A quantity out of range", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn set_quantity(
    State(state): State<AppState>,
    owner: CartOwner,
    Path(variant_id): Path<i64>,
    Json(body): Json<SetQuantity>,
) -> ApiResult<Json<Cart>> {
    check_quantity(body.quantity, 0)?;
    change_line(&state, &owner, variant_id, body.quantity).await
}

/// Remove a line
#[utoipa::path(
    delete,
    path = "/cart/lines/{variant_id}",
    tag = "cart",
    params(
        ("variant_id" = i64, Path, description = "The variant of the line"),
        ("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart"),
    ),
    responses(
        (status = 200, body = Cart),
        (status = 400, description = "Malformed path", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Neither an access token nor a cart token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such line, or the cart token names no cart", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []))
)]
pub async fn remove_line(
    State(state): State<AppState>,
    owner: CartOwner,
    Path(variant_id): Path<i64>,
) -> ApiResult<Json<Cart>> {
    change_line(&state, &owner, variant_id, 0).await
}

async fn change_line(
    state: &AppState,
    owner: &CartOwner,
    variant_id: i64,
    quantity: i32,
) -> ApiResult<Json<Cart>> {
    let mut tx = state.db.write.begin().await?;
    let cart_id = repo::find(&mut tx, owner)
        .await?
        .ok_or(ApiError::NotFound("cart line"))?;
    repo::set_quantity(&mut tx, cart_id, variant_id, quantity).await?;
    let lines = repo::lines(&mut tx, cart_id).await?;
    tx.commit().await?;
    Ok(Json(repo::view(&state.config.shop, lines)?))
}
