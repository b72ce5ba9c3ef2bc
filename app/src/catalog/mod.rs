//! The catalog: categories (a tree), brands, tags, products and their variants (SKUs),
//! public lists and search, and the staff endpoints that change them.
//!
//! Public reads use the read pool (a replica may serve them); every write and the
//! responses to writes use the primary.

mod admin;
pub mod cache;
mod categories;
pub mod cursor;
mod detail;
pub mod fields;
mod labels;
mod list;
pub mod model;
mod requests;
mod search;
mod shared_cache;
pub mod slug;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            categories::list_categories,
            categories::create_category
        ))
        .routes(routes!(
            categories::get_category,
            categories::update_category,
            categories::delete_category
        ))
        .routes(routes!(labels::list_brands, labels::create_brand))
        .routes(routes!(labels::update_brand, labels::delete_brand))
        .routes(routes!(labels::list_tags, labels::create_tag))
        .routes(routes!(labels::update_tag, labels::delete_tag))
        .routes(routes!(list::list_products, admin::create_product))
        .routes(routes!(
            detail::get_product,
            admin::update_product,
            admin::archive_product
        ))
        .routes(routes!(detail::get_product_by_slug))
        .routes(routes!(admin::add_variant))
        .routes(routes!(admin::update_variant))
        .routes(routes!(search::search))
        .layer(axum::middleware::from_fn(cache::cache_public_reads))
}

/// The name of the unique constraint a write violated, if that is why it failed.
fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// The name of the foreign key a write violated, if that is why it failed.
fn foreign_key_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => db.constraint(),
        _ => None,
    }
}

fn slug_taken() -> ApiError {
    ApiError::conflict("slug_taken", "another item already has this slug")
}
