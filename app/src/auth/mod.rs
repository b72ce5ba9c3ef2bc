//! Authentication: registration, login, logout, token refresh and password reset.

pub mod extract;
pub mod password;
pub mod token;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

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
}
