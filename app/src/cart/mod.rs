//! The shopping cart: one per user, or per anonymous visitor holding a cart token.

pub mod merge;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
