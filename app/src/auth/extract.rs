//! Extractors that authenticate a request from its `Authorization: Bearer` header.

use axum::{
    extract::FromRequestParts,
    http::{request::Parts, HeaderMap},
};
use uuid::Uuid;

use super::{failure::TOKEN_REVOKED, revoke, token::Claims, Role};
use crate::{error::ApiError, state::AppState};

/// A signed-in user (customer or staff). Rejects with 401 when the token is missing, bad
/// or revoked.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
    /// The access token's claims (logout revokes it by its id).
    pub claims: Claims,
}

impl AuthUser {
    pub fn is_staff(&self) -> bool {
        self.role == Role::Staff
    }
}

/// A signed-in staff member: 401 without a valid token, 403 for a customer.
#[derive(Debug, Clone)]
pub struct Staff(pub AuthUser);

/// A signed-in user if a token is present; anonymous otherwise. A present but invalid
/// token is still rejected, so a client never silently loses its identity.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthUser>);

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(
            "expected Authorization: Bearer <token>",
        )),
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<AuthUser>, ApiError> {
    let Some(token) = bearer(&parts.headers)? else {
        return Ok(None);
    };
    let claims = state
        .jwt
        .verify(token)
        .ok_or(ApiError::Unauthorized("invalid or expired access token"))?;
    // Without an answer from Redis the token is accepted: it expires within minutes, and
    // signing everyone out while Redis is down would be worse (see auth/revoke.rs).
    if let Ok(true) = revoke::is_revoked(&state.redis, &claims).await {
        return Err(TOKEN_REVOKED);
    }
    Ok(Some(AuthUser {
        id: claims.sub,
        role: claims.role,
        claims,
    }))
}

/// The subject of the request's access token if it is validly signed and current (not
/// checked against the denylist): whose budget a request is charged to.
pub fn verified_subject(headers: &HeaderMap, state: &AppState) -> Option<Uuid> {
    let token = bearer(headers).ok()??;
    state.jwt.verify(token).map(|claims| claims.sub)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state)
            .await?
            .ok_or(ApiError::Unauthorized("sign in first: no access token"))
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.is_staff() {
            Ok(Staff(user))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(MaybeUser(authenticate(parts, state).await?))
    }
}
