//! 401 answers with a code of their own (`invalid_credentials`, `refresh_token_reused`,
//! `invalid_refresh_token`, `token_revoked`): a client needs to tell "sign in again" from "your session was
//! stolen".

use crate::error::ApiError;

pub const INVALID_CREDENTIALS: ApiError = ApiError::AuthFailed {
    code: "invalid_credentials",
    detail: "wrong email or password",
    challenge: "Bearer",
};
pub const INVALID_REFRESH_TOKEN: ApiError = ApiError::AuthFailed {
    code: "invalid_refresh_token",
    detail: "the refresh token is unknown or expired",
    challenge: "Bearer",
};
pub const TOKEN_REVOKED: ApiError = ApiError::AuthFailed {
    code: "token_revoked",
    detail: "the access token was revoked (signed out); sign in again",
    challenge: "Bearer",
};
pub const REFRESH_TOKEN_REUSED: ApiError = ApiError::AuthFailed {
    code: "refresh_token_reused",
    detail: "the refresh token was already used; the session is revoked, sign in again",
    challenge: "Bearer",
};

#[cfg(test)]
mod tests {
    use axum::{
        http::{header, StatusCode},
        response::IntoResponse,
    };

    #[tokio::test]
    async fn the_code_replaces_unauthorized() {
        let response = super::REFRESH_TOKEN_REUSED.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "refresh_token_reused");
        assert_eq!(problem["type"], "/problems/refresh_token_reused");
        assert_eq!(problem["status"], 401);
    }
}
