//! Payment failures with codes of their own: `invalid_card` (422 with a field pointer),
//! `invalid_signature` / `stale_signature` (401, challenging for the webhook's signature
//! rather than a bearer token).

use crate::error::{ApiError, FieldError};

/// The card was refused before it was stored.
pub fn invalid_card(field: FieldError) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_card",
        detail: "the card was rejected".into(),
        errors: vec![field],
    }
}

/// The webhook signature is missing, malformed or does not match the body.
pub fn invalid_signature(detail: &'static str) -> ApiError {
    ApiError::AuthFailed {
        code: "invalid_signature",
        detail,
        challenge: "Shop-Signature",
    }
}

/// The webhook signature matches, but its timestamp is outside the tolerance.
pub fn stale_signature() -> ApiError {
    ApiError::AuthFailed {
        code: "stale_signature",
        detail: "the signature timestamp is outside the accepted window",
        challenge: "Shop-Signature",
    }
}
