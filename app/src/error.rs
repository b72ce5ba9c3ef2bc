//! Every failure a handler can return, as one enum rendered as RFC 9457 problem details
//! (`application/problem+json`) with a stable `code`. Internal detail (SQL, causes) is
//! logged, never sent.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

pub type ApiResult<T> = Result<T, ApiError>;

/// One problem with one field of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a JSON pointer into the request body or the query parameter name.
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: unreadable JSON, a bad query or path parameter.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// Well-formed, but some fields are not acceptable.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Well-formed, but refused for a reason with a code of its own (`address_required`,
    /// `idempotency_key_reused`, ...).
    #[error("{detail}")]
    Unprocessable {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A 401 with a code of its own, so a client can tell "sign in again" from
    /// "your session was revoked"; `challenge` is the scheme the client should use
    /// (`Bearer`, or the webhook's `Shop-Signature`).
    #[error("{detail}")]
    AuthFailed {
        code: &'static str,
        detail: &'static str,
        challenge: &'static str,
    },
    #[error("this needs the staff role")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (stock, a state machine, a unique key).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    PaymentRequired { code: &'static str, detail: String },
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("too many requests")]
    TooManyRequests { retry_after_s: u64 },
    /// A dependency is briefly unavailable (database failover, gateway outage): retry.
    #[error("{detail}")]
    Unavailable {
        code: &'static str,
        detail: String,
        retry_after_s: u64,
    },
    #[error("the request took longer than {0} ms")]
    Timeout(u64),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Problem responses most operations share, described once in the OpenAPI document and
/// referenced by each operation. The types only describe; they are never built.
#[allow(dead_code)]
pub mod responses {
    use super::Problem;

    #[derive(utoipa::ToResponse)]
    #[response(
        description = "No, invalid or revoked access token (`unauthorized`, `token_revoked`)",
        content_type = "application/problem+json"
    )]
    pub struct Unauthenticated(#[to_schema] Problem);

    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The access token is not a staff member's",
        content_type = "application/problem+json"
    )]
    pub struct NotStaff(#[to_schema] Problem);

    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The body is not JSON (Content-Type: application/json)",
        content_type = "application/problem+json"
    )]
    pub struct NotJson(#[to_schema] Problem);
}

/// The problem details document of RFC 9457, as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type: `/problems/{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable identifier of the problem.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) | Self::AuthFailed { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::PaymentRequired { code, .. }
            | Self::AuthFailed { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::Validation(_) => "validation_failed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Timeout(_) => "timeout",
            Self::Internal(_) => "internal",
        }
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after_s } | Self::Unavailable { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            Self::Timeout(_) => Some(1),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let errors = match self {
            Self::Validation(errors) | Self::Unprocessable { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            type_: format!("/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_owned(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error")
            }
            Self::Unavailable { code, detail, .. } => tracing::warn!(code, detail, "unavailable"),
            _ => {}
        }
        let mut response = (self.status(), axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::AuthFailed { challenge, .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        response
    }
}

/// Database errors: a lost or read-only primary (failover in progress), an exhausted pool or a
/// serialization conflict are worth a retry (503 + Retry-After); anything else is a bug.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let retryable = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                // serialization_failure, deadlock_detected, read_only_sql_transaction,
                // admin_shutdown, crash_shutdown, cannot_connect_now, query_canceled
                Some("40001" | "40P01" | "25006" | "57P01" | "57P02" | "57P03" | "57014")
            ),
            _ => false,
        };
        // Class 22 (data exception): a value the request carried cannot be stored, such as a
        // NUL character or a number out of range. The client's fault, not ours.
        if let sqlx::Error::Database(db) = &error {
            if db.code().is_some_and(|code| code.starts_with("22")) {
                return Self::invalid("", "a value in the request cannot be stored (out of range or an invalid character)");
            }
        }
        if retryable {
            tracing::warn!(error = %error, "database unavailable");
            Self::Unavailable {
                code: "database_unavailable",
                detail: "the database is briefly unavailable; retry shortly".into(),
                retry_after_s: 1,
            }
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonDataError(e) => Self::Validation(vec![FieldError {
                field: json_error_field(&e.body_text()),
                message: e.body_text(),
            }]),
            JsonRejection::JsonSyntaxError(e) => Self::bad_request("invalid_json", e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::bad_request("invalid_body", other.body_text()),
        }
    }
}

/// serde_path_to_error (used by axum) prefixes the message with the field path.
fn json_error_field(message: &str) -> String {
    message
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .and_then(|rest| rest.split_once(": "))
        .map(|(path, _)| path.to_owned())
        .filter(|path| !path.contains(' '))
        .unwrap_or_default()
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<crate::money::MoneyError> for ApiError {
    fn from(error: crate::money::MoneyError) -> Self {
        use crate::money::MoneyError::*;
        match error {
            CurrencyMismatch(..) => Self::conflict("currency_mismatch", error.to_string()),
            Overflow => Self::invalid("", error.to_string()),
            BadCurrency(_) => Self::internal(error),
        }
    }
}

/// `Json` whose rejections are problem details.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Query` whose rejections are problem details.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `Path` whose rejections are problem details.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
