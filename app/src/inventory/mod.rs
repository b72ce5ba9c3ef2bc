//! Stock per SKU and warehouse, and the append-only ledger of its movements.

pub mod ledger;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
