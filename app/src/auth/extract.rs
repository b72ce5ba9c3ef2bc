//! Extractors that authenticate a request from its `Authorization: Bearer` header.

use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use super::Role;
use crate::{error::ApiError, state::AppState};

/// A signed-in user (customer or staff). Rejects with 401 when the token is missing or bad.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_staff(&self) -> bool {
        self.role == Role::Staff
    }
}

/// A signed-in staff member: 401 without a valid token, 403 for a customer.
#[derive(Debug, Clone, Copy)]
pub struct Staff(pub AuthUser);

/// A signed-in user if a token is present; anonymous otherwise. A present but invalid
/// token is still rejected, so a client never silently loses its identity.
#[derive(Debug, Clone, Copy)]
pub struct MaybeUser(pub Option<AuthUser>);

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
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

fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<AuthUser>, ApiError> {
    let Some(token) = bearer(parts)? else {
        return Ok(None);
    };
    let claims = state
        .jwt
        .verify(token)
        .ok_or(ApiError::Unauthorized("invalid or expired access token"))?;
    Ok(Some(AuthUser {
        id: claims.sub,
        role: claims.role,
    }))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state)?.ok_or(ApiError::Unauthorized("sign in first: no access token"))
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
        Ok(MaybeUser(authenticate(parts, state)?))
    }
}
