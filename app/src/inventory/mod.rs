//! Stock per SKU and warehouse, and the append-only ledger of its movements.

pub mod ledger;
pub mod model;
mod repo;
mod routes;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

/// Staff endpoints: stock levels, restocks and adjustments, low stock, the ledger, warehouses.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::variant_stock))
        .routes(routes!(routes::restock))
        .routes(routes!(routes::adjust))
        .routes(routes!(routes::low_stock))
        .routes(routes!(routes::movements))
        .routes(routes!(routes::list_warehouses, routes::create_warehouse))
        // Stock shows on product pages: a change here empties the catalog cache.
        .layer(axum::middleware::from_fn(
            crate::catalog::cache::invalidate_on_write,
        ))
}
