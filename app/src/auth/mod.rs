//! Authentication: registration, login, logout, token refresh and password reset.

pub mod email;
pub mod extract;
pub mod failure;
pub mod model;
pub mod password;
pub mod refresh;
pub mod reset;
pub mod revoke;
mod routes;
pub mod token;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use extract::{AuthUser, MaybeUser, Staff};

use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Role {
    Customer,
    Staff,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::register))
        .routes(routes!(routes::login))
        .routes(routes!(routes::refresh))
        .routes(routes!(routes::logout))
        .routes(routes!(routes::request_password_reset))
        .routes(routes!(routes::confirm_password_reset))
}
