//! Handlers of `/auth/*`: registration, login, token refresh, logout, password reset.

use axum::response::{IntoResponse, Response};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    failure::{INVALID_CREDENTIALS, INVALID_REFRESH_TOKEN, REFRESH_TOKEN_REUSED},
    model::{
        parse_new_password, AuthTokens, LoginRequest, LogoutRequest, PasswordResetConfirm,
        PasswordResetRequest, RefreshRequest, RegisterRequest,
    },
    password,
    refresh::{self, Rotation},
    reset, revoke, AuthUser, Role,
};
use crate::{
    error::{ApiError, ApiResult, Json},
    http::client_ip::ClientIp,
    ratelimit::{self, Charge},
    state::AppState,
    users::profile::{fetch_profile, UserProfile},
};

/// The anonymous cart a visitor filled before signing in, named by this header.
const CART_TOKEN: &str = "x-cart-token";

/// Moves the anonymous cart of the request's `X-Cart-Token` (if any) into the user's cart.
async fn adopt_cart(
    conn: &mut PgConnection,
    headers: &HeaderMap,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let token = headers
        .get(CART_TOKEN)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    match token {
        Some(token) if !token.is_empty() => {
            crate::cart::merge::merge_into_user(conn, token, user_id).await
        }
        _ => Ok(()),
    }
}

/// Creates a customer account and signs it in.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body = RegisterRequest,
    params(("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart to move into the new account")),
    responses(
        (status = 201, description = "Registered and signed in", body = AuthTokens),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: an account with this email exists (in any letter case)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<AuthTokens>)> {
    let account = body.parse()?;
    let auth = &state.config.auth;
    let hash = password::hash(&auth.argon2, account.password.into_inner())
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.db.write.begin().await?;
    let user = sqlx::query_as!(
        UserProfile,
        r#"INSERT INTO users (id, email, password_hash, full_name, role) VALUES ($1, $2, $3, $4, 'customer')
           ON CONFLICT (lower(email)) DO NOTHING
           RETURNING id, email, full_name, role AS "role: Role", created_at"#,
        Uuid::now_v7(),
        account.email.as_str(),
        hash,
        account.full_name.as_str(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::conflict("email_taken", "an account with this email already exists"))?;
    adopt_cart(&mut tx, &headers, user.id).await?;
    let session = refresh::start_family(&mut tx, user.id, auth.refresh_ttl_s).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AuthTokens::new(&state.jwt, user, session)),
    ))
}

/// Signs in with email and password.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    params(("X-Cart-Token" = Option<String>, Header, description = "Token of an anonymous cart to merge into the user's cart")),
    responses(
        (status = 200, description = "Signed in", body = AuthTokens),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: wrong email or password (not told apart)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Missing or mistyped fields", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many attempts for this account or from this address; `Retry-After` says when to try again", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<LoginRequest>,
) -> Response {
    // Every attempt counts, before the password is checked: that is what slows guessing.
    let limits = &state.config.redis.rate_limit;
    let charged = ratelimit::charge(
        &state.redis,
        &[
            Charge {
                class: "login_account",
                limit: &limits.login_account,
                subject: ratelimit::hashed(&body.email.trim().to_lowercase()),
            },
            Charge {
                class: "login_ip",
                limit: &limits.login_ip,
                subject: ip.to_string(),
            },
        ],
    )
    .await;
    match charged {
        Err(unavailable) => unavailable.into_response(),
        Ok(None) => sign_in(&state, &headers, body).await.into_response(),
        Ok(Some(decision)) if !decision.allowed => {
            (decision.headers(), decision.refusal()).into_response()
        }
        Ok(Some(decision)) => {
            (decision.headers(), sign_in(&state, &headers, body).await).into_response()
        }
    }
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    body: LoginRequest,
) -> ApiResult<Json<AuthTokens>> {
    let auth = &state.config.auth;
    let account = sqlx::query!(
        "SELECT id, password_hash FROM users WHERE lower(email) = lower($1)",
        body.email.trim()
    )
    .fetch_optional(&state.db.write)
    .await?;
    // An unknown email still costs a hash verification, so timing does not reveal accounts.
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let matches = password::verify(&auth.argon2, body.password, stored)
        .await
        .map_err(ApiError::internal)?;
    let Some(account) = account.filter(|_| matches) else {
        return Err(INVALID_CREDENTIALS);
    };

    let mut tx = state.db.write.begin().await?;
    let user = fetch_profile(&mut tx, account.id)
        .await?
        .ok_or(INVALID_CREDENTIALS)?;
    adopt_cart(&mut tx, headers, user.id).await?;
    let session = refresh::start_family(&mut tx, user.id, auth.refresh_ttl_s).await?;
    tx.commit().await?;
    Ok(Json(AuthTokens::new(&state.jwt, user, session)))
}

/// Exchanges a refresh token for a new access and refresh token. Each refresh token works
/// once: presenting it again revokes every token of its session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthTokens),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_refresh_token` (unknown or expired) or `refresh_token_reused` (the session is now revoked)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Missing or mistyped fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<AuthTokens>> {
    let mut tx = state.db.write.begin().await?;
    match refresh::rotate(
        &mut tx,
        &body.refresh_token,
        state.config.auth.refresh_ttl_s,
    )
    .await?
    {
        Rotation::Invalid => Err(INVALID_REFRESH_TOKEN),
        Rotation::Reused { family_id } => {
            // The revocation must stick even though the request fails.
            tx.commit().await?;
            // The session's access tokens (the thief's too) stop working at once.
            let _ = revoke::revoke_sessions(&state.redis, &state.jwt, &[family_id]).await;
            Err(REFRESH_TOKEN_REUSED)
        }
        Rotation::Rotated { user_id, session } => {
            let user = fetch_profile(&mut tx, user_id)
                .await?
                .ok_or(INVALID_REFRESH_TOKEN)?;
            tx.commit().await?;
            Ok(Json(AuthTokens::new(&state.jwt, user, session)))
        }
    }
}

/// Ends a session: revokes the refresh token's family if it belongs to the caller, and (with
/// Redis) the access token presented and every access token of that session. Without Redis,
/// or while it is down, the access tokens stay valid until they expire (minutes).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    request_body = LogoutRequest,
    responses(
        (status = 204, description = "Signed out (also when the token was unknown or someone else's)"),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Missing or mistyped fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<LogoutRequest>,
) -> ApiResult<StatusCode> {
    let mut conn = state.db.write.acquire().await?;
    let family = refresh::revoke_family_of(&mut conn, user.id, &body.refresh_token).await?;
    drop(conn);
    // Best effort: PostgreSQL holds the revocation that matters (the refresh token); a
    // failure here is counted and logged by the Redis layer.
    let _ = revoke::revoke_token(&state.redis, &state.jwt, &user.claims).await;
    if let Some(family) = family {
        let _ = revoke::revoke_sessions(&state.redis, &state.jwt, &[family]).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Emails a password reset token to the account's address. The answer is the same whether
/// or not an account has this email.
#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If the account exists, an email with a reset token is on its way"),
        (status = 400, description = "Unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Missing or mistyped fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn request_password_reset(
    State(state): State<AppState>,
    Json(body): Json<PasswordResetRequest>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.write.begin().await?;
    reset::request(&mut tx, &body.email, state.config.auth.reset_ttl_s).await?;
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with a reset token, and signs the account out everywhere.
#[utoipa::path(
    post,
    path = "/auth/password-reset/confirm",
    tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 204, description = "The password is changed; every session is revoked"),
        (status = 400, description = "`invalid_reset_token` (unknown, expired or used) or unreadable JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    Json(body): Json<PasswordResetConfirm>,
) -> ApiResult<StatusCode> {
    let new_password = parse_new_password(body.new_password)?;
    let hash = password::hash(&state.config.auth.argon2, new_password.into_inner())
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.db.write.begin().await?;
    let Some(user_id) = reset::redeem(&mut tx, &body.token).await? else {
        return Err(ApiError::bad_request(
            "invalid_reset_token",
            "the reset token is unknown, expired or used",
        ));
    };
    sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        user_id,
        hash
    )
    .execute(&mut *tx)
    .await?;
    let families = refresh::revoke_all(&mut tx, user_id).await?;
    tx.commit().await?;
    let _ = revoke::revoke_sessions(&state.redis, &state.jwt, &families).await;
    Ok(StatusCode::NO_CONTENT)
}
