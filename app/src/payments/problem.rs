//! Payment failures that need a more specific `code` than their `ApiError` variant gives:
//! `invalid_card` (422 with field pointers), `invalid_signature` / `stale_signature` (401).
//! Everything else is an `ApiError`; the rendering (status, problem document, headers) is
//! always `ApiError`'s, only `code`, `type` and `detail` are replaced.

use axum::{
    body::Body,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, FieldError};

#[derive(Debug)]
pub enum PaymentError {
    Api(ApiError),
    /// The card was refused before it was stored.
    InvalidCard(FieldError),
    /// The webhook signature is missing, malformed or does not match the body.
    InvalidSignature(&'static str),
    /// The webhook signature matches, but its timestamp is outside the tolerance.
    StaleSignature,
}

impl From<ApiError> for PaymentError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<sqlx::Error> for PaymentError {
    fn from(error: sqlx::Error) -> Self {
        Self::Api(error.into())
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        let (base, code, detail) = match self {
            Self::Api(error) => return error.into_response(),
            Self::InvalidCard(field) => (
                ApiError::Validation(vec![field]),
                "invalid_card",
                "the card was rejected",
            ),
            Self::InvalidSignature(why) => (ApiError::Unauthorized(why), "invalid_signature", why),
            Self::StaleSignature => (
                ApiError::Unauthorized("stale signature"),
                "stale_signature",
                "the signature timestamp is outside the accepted window",
            ),
        };
        let mut problem = base.problem();
        problem.code = code.to_owned();
        problem.type_ = format!("/problems/{code}");
        problem.detail = detail.to_owned();
        let unauthorized = matches!(base, ApiError::Unauthorized(_));
        let mut response = base.into_response();
        let body = serde_json::to_vec(&problem).expect("problem documents serialize");
        *response.body_mut() = Body::from(body);
        response.headers_mut().remove(header::CONTENT_LENGTH);
        if unauthorized {
            // The webhook is authenticated by its signature header, not by a bearer token.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Shop-Signature"),
            );
        }
        response
    }
}
