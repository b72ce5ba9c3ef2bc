//! Request and response bodies of the auth endpoints, and the checked values parsed from them.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{email::Email, refresh::Session, token::JwtKeys};
use crate::{
    error::{ApiError, ApiResult},
    users::{
        fields::{FieldErrors, FullName},
        profile::UserProfile,
    },
};

/// A new password: 10 to 128 characters (counted as Unicode scalar values, like JSON
/// Schema's `minLength`). Never printed.
pub struct Password(String);

#[derive(Debug, thiserror::Error)]
#[error("must be 10 to 128 characters long")]
pub struct BadPassword;

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, BadPassword> {
        let length = raw.chars().count();
        if (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            Ok(Self(raw))
        } else {
            Err(BadPassword)
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Unique regardless of letter case.
    #[schema(max_length = 254, example = "ada@example.com")]
    pub email: String,
    #[schema(min_length = 10, max_length = 128, format = Password)]
    pub password: String,
    #[schema(min_length = 1, max_length = 200, example = "Ada Lovelace")]
    pub full_name: String,
}

/// A registration that passed every check.
#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
}

impl RegisterRequest {
    pub fn parse(self) -> ApiResult<NewAccount> {
        let mut errors = FieldErrors::default();
        let email = errors.check("/email", Email::parse(&self.email));
        let password = errors.check("/password", Password::parse(self.password));
        let full_name = errors.check("/full_name", FullName::parse(&self.full_name));
        errors.finish((|| {
            Some(NewAccount {
                email: email?,
                password: password?,
                full_name: full_name?,
            })
        })())
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The refresh token of the session to end; its whole rotation family is revoked.
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The token from the password reset email.
    pub token: String,
    #[schema(min_length = 10, max_length = 128, format = Password)]
    pub new_password: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

/// A signed-in session: a short-lived access token (JWT, sent as `Authorization: Bearer`)
/// and a refresh token that can be exchanged once for a new pair.
#[derive(Serialize, ToSchema)]
pub struct AuthTokens {
    pub user: UserProfile,
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: TokenType,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl AuthTokens {
    pub fn new(jwt: &JwtKeys, user: UserProfile, session: Session) -> Self {
        Self {
            access_token: jwt.issue_for(user.id, user.role, Some(session.family_id)),
            user,
            refresh_token: session.refresh_token,
            token_type: TokenType::Bearer,
            expires_in: jwt.access_ttl_s,
        }
    }
}

/// The new password of a reset confirmation, checked.
pub fn parse_new_password(raw: String) -> ApiResult<Password> {
    Password::parse(raw).map_err(|error| ApiError::invalid("/new_password", error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("ééééééééé".into()).is_err(), "9 characters");
        assert!(
            Password::parse("éééééééééé".into()).is_ok(),
            "10 characters, 20 bytes"
        );
        assert!(Password::parse("x".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("x".repeat(12)).unwrap()),
            "Password(..)"
        );
    }

    #[test]
    fn registration_reports_every_bad_field() {
        let request = RegisterRequest {
            email: "nope".into(),
            password: "short".into(),
            full_name: " ".into(),
        };
        let Err(ApiError::Validation(errors)) = request.parse() else {
            panic!("expected 422")
        };
        let pointers: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(pointers, ["/email", "/password", "/full_name"]);
    }
}
