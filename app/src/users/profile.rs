//! The signed-in user's own account: `GET` and `PATCH /users/me`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::fields::FullName;
use crate::{
    auth::{AuthUser, Role},
    error::{ApiError, ApiResult, Json},
    state::AppState,
};

/// An account as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserProfile {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Changes to the profile; absent fields stay as they are. The email cannot be changed here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 200,
        example = "Ada Lovelace"
    )]
    pub full_name: Option<String>,
}

/// The profile of `id`; `None` when the account is gone.
pub async fn fetch_profile(conn: &mut PgConnection, id: Uuid) -> ApiResult<Option<UserProfile>> {
    Ok(sqlx::query_as!(
        UserProfile,
        r#"SELECT id, email, full_name, role AS "role: Role", created_at FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// A valid access token may outlive its account.
const GONE: ApiError = ApiError::Unauthorized("this account no longer exists");

/// The signed-in user's profile.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = UserProfile),
        (status = 401, response = crate::error::responses::Unauthenticated),
    )
)]
pub async fn get_me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<UserProfile>> {
    let mut conn = state.db.write.acquire().await?;
    fetch_profile(&mut conn, user.id)
        .await?
        .map(Json)
        .ok_or(GONE)
}

/// Changes the signed-in user's profile.
#[utoipa::path(
    patch,
    path = "/users/me",
    tag = "users",
    security(("bearer" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "The profile as changed", body = UserProfile),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid or unknown fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    Json(patch): Json<ProfilePatch>,
) -> ApiResult<Json<UserProfile>> {
    let full_name = patch
        .full_name
        .as_deref()
        .map(FullName::parse)
        .transpose()
        .map_err(|error| ApiError::invalid("/full_name", error.to_string()))?;
    let profile = sqlx::query_as!(
        UserProfile,
        r#"UPDATE users SET full_name = COALESCE($2, full_name), updated_at = now()
           WHERE id = $1
           RETURNING id, email, full_name, role AS "role: Role", created_at"#,
        user.id,
        full_name.as_ref().map(FullName::as_str),
    )
    .fetch_optional(&state.db.write)
    .await?;
    profile.map(Json).ok_or(GONE)
}
