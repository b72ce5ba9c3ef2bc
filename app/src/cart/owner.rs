//! Whose cart a request means: the signed-in user's, or the anonymous cart named by
//! `X-Cart-Token`.

use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use crate::{
    auth::{token::hash_token, MaybeUser},
    error::ApiError,
    state::AppState,
};

pub const CART_TOKEN_HEADER: &str = "x-cart-token";

#[derive(Debug, Clone)]
pub enum CartOwner {
    User(Uuid),
    /// The SHA-256 of the visitor's cart token.
    Anonymous(Vec<u8>),
}

impl FromRequestParts<AppState> for CartOwner {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A signed-in user always means their own cart; an anonymous one is merged at login.
        if let MaybeUser(Some(user)) = MaybeUser::from_request_parts(parts, state).await? {
            return Ok(CartOwner::User(user.id));
        }
        match parts
            .headers
            .get(CART_TOKEN_HEADER)
            .map(|v| v.to_str().map(str::trim))
        {
            Some(Ok(token)) if !token.is_empty() && token.len() <= 100 => {
                Ok(CartOwner::Anonymous(hash_token(token)))
            }
            Some(_) => Err(ApiError::Unauthorized("malformed X-Cart-Token header")),
            None => Err(ApiError::Unauthorized(
                "sign in, or send the X-Cart-Token of an anonymous cart",
            )),
        }
    }
}
