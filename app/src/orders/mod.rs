//! Checkout and the order life cycle.

pub mod checkout;
pub mod model;
pub mod repo;
mod routes;
pub mod status;
pub mod transition;

use utoipa_axum::{router::OpenApiRouter, routes};

pub use status::OrderStatus;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkout::checkout))
        .routes(routes!(routes::list_orders))
        .routes(routes!(routes::get_order))
        .routes(routes!(routes::cancel_order))
        .routes(routes!(routes::set_status))
}
