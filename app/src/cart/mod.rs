//! The shopping cart: one per signed-in user, or per anonymous visitor holding a cart token.
//! Prices and totals are always computed by the server from current prices.

pub mod merge;
pub mod model;
mod owner;
pub mod pricing;
pub mod repo;
mod routes;

use utoipa_axum::{router::OpenApiRouter, routes};

pub use owner::CartOwner;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::get_cart, routes::clear_cart))
        .routes(routes!(routes::create_anonymous_cart))
        .routes(routes!(routes::add_line))
        .routes(routes!(routes::set_quantity, routes::remove_line))
}
