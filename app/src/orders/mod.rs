//! Checkout and the order life cycle.

pub mod status;
pub mod transition;

use utoipa_axum::router::OpenApiRouter;

pub use status::OrderStatus;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
