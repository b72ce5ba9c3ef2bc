//! The signed-in customer's stored cards.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    gateway::GatewayError,
    model::{NewPaymentMethod, PaymentMethod},
    problem::invalid_card,
    repo,
};
use crate::{
    auth::AuthUser,
    error::{ApiError, ApiResult, FieldError, Json, Path},
    state::AppState,
};

/// Store a card
///
/// The card goes to the payment gateway, which returns a token; the shop stores only that
/// token, the brand, the last four digits and the expiry. The number and CVC are never
/// stored, logged or echoed in errors.
///
/// Test cards (any future expiry, any 3-digit CVC):
/// - `4242424242424242`: payments succeed;
/// - `4000000000000002`: payments are declined (`card_declined`);
/// - `4000000000009995`: payments are declined (`insufficient_funds`);
/// - `4000000000000119`: payments fail transiently (503 `gateway_unavailable`).
///
/// Other numbers that pass the Luhn check succeed; others are refused (422 `invalid_card`).
#[utoipa::path(
    post,
    path = "/payment-methods",
    tag = "payments",
    request_body = NewPaymentMethod,
    responses(
        (status = 201, description = "Stored", body = PaymentMethod),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "`invalid_card` (with a pointer to the field) or `validation_failed`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`gateway_unavailable`: retry after `Retry-After` seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_payment_method(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewPaymentMethod>,
) -> ApiResult<(StatusCode, Json<PaymentMethod>)> {
    let card = body.card.parse().map_err(invalid_card)?;
    let tokenized = state
        .gateway
        .tokenize(&card)
        .await
        .map_err(|error| match error {
            GatewayError::InvalidCard { field, message } => invalid_card(FieldError {
                field: field.pointer().into(),
                message,
            }),
            GatewayError::Transient => gateway_unavailable(),
        })?;
    let mut conn = state.db.write.acquire().await?;
    let method = repo::insert_method(
        &mut conn,
        repo::NewMethod {
            user_id: user.id,
            gateway: state.gateway.name(),
            token: &tokenized.token,
            brand: &tokenized.brand,
            last4: &tokenized.last4,
            // Parsed as 1..=12 and 2000..=9999: both fit.
            exp_month: i16::from(card.exp_month),
            exp_year: i16::try_from(card.exp_year).map_err(ApiError::internal)?,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(method)))
}

/// List my cards
#[utoipa::path(
    get,
    path = "/payment-methods",
    tag = "payments",
    responses(
        (status = 200, description = "The signed-in user's cards, oldest first", body = Vec<PaymentMethod>),
        (status = 401, response = crate::error::responses::Unauthenticated),
    ),
    security(("bearer" = []))
)]
pub async fn list_payment_methods(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<PaymentMethod>>> {
    let mut conn = state.db.write.acquire().await?;
    Ok(Json(repo::list_methods(&mut conn, user.id).await?))
}

/// Delete one of my cards
///
/// Payments made with the card keep their record; their `payment_method_id` becomes null.
#[utoipa::path(
    delete,
    path = "/payment-methods/{id}",
    tag = "payments",
    params(("id" = Uuid, Path, description = "Payment method id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such card of the signed-in user", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_payment_method(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.write.begin().await?;
    if !repo::delete_method(&mut tx, id, user.id).await? {
        return Err(ApiError::NotFound("payment method"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn gateway_unavailable() -> ApiError {
    ApiError::Unavailable {
        code: "gateway_unavailable",
        detail: "the payment gateway is briefly unavailable; nothing was charged, retry shortly"
            .into(),
        retry_after_s: 5,
    }
}
