//! Staff endpoints that change products and variants. Every change of variants recomputes
//! the product's price (its cheapest active variant) in the same transaction, with the
//! product row locked so concurrent variant changes apply one after another.

use std::collections::BTreeMap;

use axum::{extract::State, http::StatusCode};
use sqlx::PgConnection;

use super::{
    detail::{self, View},
    fields::Checks,
    foreign_key_violation,
    model::{ProductDetail, VariantView},
    requests::{
        check_variant, sku_taken, NewProduct, NewVariant, ProductPatch, VariantInput, VariantPatch,
    },
    slug_taken, unique_violation,
};
use crate::{
    auth::Staff,
    error::{ApiError, ApiResult, Json, Path, Problem},
    money::{Currency, Money},
    state::AppState,
};

/// Brand, category and tags a request names must exist: 422 with a pointer otherwise.
async fn check_references(
    conn: &mut PgConnection,
    brand_id: Option<i64>,
    category_id: Option<i64>,
    tags: &[String],
    request_tags: &[String],
) -> ApiResult<()> {
    let found = sqlx::query!(
        r#"SELECT ($1::bigint IS NULL OR EXISTS (SELECT 1 FROM brands WHERE id = $1)) AS "brand!",
                  ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM categories WHERE id = $2)) AS "category!",
                  ARRAY(SELECT u.slug FROM unnest($3::text[]) AS u(slug)
                        WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.slug = u.slug)) AS "unknown_tags!""#,
        brand_id,
        category_id,
        tags,
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut checks = Checks::new();
    if !found.brand {
        checks.fail("/brand_id", "no brand has this id");
    }
    if !found.category {
        checks.fail("/category_id", "no category has this id");
    }
    for unknown in &found.unknown_tags {
        let i = request_tags
            .iter()
            .position(|t| t == unknown)
            .unwrap_or_default();
        checks.fail(format!("/tags/{i}"), "no tag has this slug");
    }
    checks.finish()
}

/// Product writes fail on a taken slug, or on a brand or category deleted meanwhile.
fn product_write_error(error: sqlx::Error) -> ApiError {
    if unique_violation(&error).is_some() {
        return slug_taken();
    }
    match foreign_key_violation(&error) {
        Some("products_brand_id_fkey") => ApiError::invalid("/brand_id", "no brand has this id"),
        Some("products_category_id_fkey") => {
            ApiError::invalid("/category_id", "no category has this id")
        }
        _ => error.into(),
    }
}

fn variant_write_error(error: sqlx::Error) -> ApiError {
    if unique_violation(&error).is_some() {
        sku_taken()
    } else {
        error.into()
    }
}

async fn set_tags(conn: &mut PgConnection, product_id: i64, tags: &[String]) -> ApiResult<()> {
    sqlx::query!("DELETE FROM product_tags WHERE product_id = $1", product_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "INSERT INTO product_tags (product_id, tag_id) SELECT $1, t.id FROM tags t WHERE t.slug = ANY($2)",
        product_id,
        tags,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_variants(
    conn: &mut PgConnection,
    product_id: i64,
    variants: &[VariantInput],
    currency: Currency,
) -> ApiResult<Vec<i64>> {
    let skus: Vec<&str> = variants.iter().map(|v| v.sku.as_str()).collect();
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let prices: Vec<i64> = variants.iter().map(|v| v.price_minor).collect();
    let attributes: Vec<serde_json::Value> =
        variants.iter().map(|v| v.attributes.clone()).collect();
    let ids = sqlx::query_scalar!(
        "INSERT INTO variants (product_id, sku, name, price_minor, currency, attributes)
         SELECT $1, u.sku, u.name, u.price_minor, $6, u.attributes
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::jsonb[]) WITH ORDINALITY
              AS u(sku, name, price_minor, attributes, n)
         ORDER BY u.n
         RETURNING id",
        product_id,
        &skus as &[&str],
        &names as &[&str],
        &prices,
        &attributes,
        currency.as_str(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(variant_write_error)?;
    Ok(ids)
}

/// The product's price becomes its cheapest active variant's (none: no price).
async fn refresh_price(conn: &mut PgConnection, product_id: i64) -> ApiResult<()> {
    sqlx::query!(
        "UPDATE products
         SET (price_minor, currency) = (SELECT v.price_minor, v.currency FROM variants v
                                        WHERE v.product_id = $1 AND v.active
                                        ORDER BY v.price_minor, v.id LIMIT 1),
             updated_at = now()
         WHERE id = $1",
        product_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks the product row for the rest of the transaction; 404 when it does not exist.
async fn lock_product(conn: &mut PgConnection, product_id: i64) -> ApiResult<()> {
    sqlx::query_scalar!(
        "SELECT id FROM products WHERE id = $1 FOR UPDATE",
        product_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound("product"))?;
    Ok(())
}

async fn staff_detail(state: &AppState, product_id: i64) -> ApiResult<ProductDetail> {
    detail::load(&state.db.write, Some(product_id), None, View::Staff)
        .await?
        .ok_or(ApiError::NotFound("product"))
}

async fn load_variant(state: &AppState, variant_id: i64) -> ApiResult<VariantView> {
    let row = sqlx::query!(
        r#"SELECT v.id, v.product_id, v.sku, v.name, v.price_minor, v.currency, v.attributes, v.active,
                  COALESCE((SELECT sum(s.on_hand - s.reserved) FROM stock s WHERE s.variant_id = v.id), 0)::bigint
                      AS "available!"
           FROM variants v WHERE v.id = $1"#,
        variant_id
    )
    .fetch_optional(&state.db.write)
    .await?
    .ok_or(ApiError::NotFound("variant"))?;
    let attributes: BTreeMap<String, serde_json::Value> = match row.attributes {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Ok(VariantView {
        id: row.id,
        product_id: row.product_id,
        sku: row.sku,
        name: row.name,
        price: Money::from_db(row.price_minor, &row.currency)?,
        attributes,
        active: row.active,
        available: row.available,
        in_stock: row.available > 0,
    })
}

/// Creates a product with its variants and tags (staff).
#[utoipa::path(
    post,
    path = "/products",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created; drafts and archived products are visible to staff only", body = ProductDetail),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 409, description = "`slug_taken` or `sku_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields; unknown brand, category or tag", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_product(
    State(state): State<AppState>,
    _staff: Staff,
    Json(new): Json<NewProduct>,
) -> ApiResult<(StatusCode, Json<ProductDetail>)> {
    let currency = state.config.shop.currency;
    let input = new.check(currency)?;
    let mut tx = state.db.write.begin().await?;
    check_references(
        &mut tx,
        input.brand_id,
        input.category_id,
        &input.tags,
        &new.tags,
    )
    .await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO products (slug, name, description, brand_id, category_id, status)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        input.slug,
        input.name,
        input.description,
        input.brand_id,
        input.category_id,
        input.status.as_str(),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(product_write_error)?;
    set_tags(&mut tx, id, &input.tags).await?;
    insert_variants(&mut tx, id, &input.variants, currency).await?;
    refresh_price(&mut tx, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(staff_detail(&state, id).await?)))
}

/// Changes a product's fields, status or tags (staff).
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The product's id")),
    request_body = ProductPatch,
    responses(
        (status = 200, body = ProductDetail),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields; unknown brand, category or tag", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_product(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
    Json(patch): Json<ProductPatch>,
) -> ApiResult<Json<ProductDetail>> {
    let changes = patch.check()?;
    let mut tx = state.db.write.begin().await?;
    lock_product(&mut tx, id).await?;
    check_references(
        &mut tx,
        changes.brand_id.flatten(),
        changes.category_id.flatten(),
        changes.tags.as_deref().unwrap_or_default(),
        patch.tags.as_deref().unwrap_or_default(),
    )
    .await?;
    sqlx::query!(
        "UPDATE products
         SET name = COALESCE($2, name), slug = COALESCE($3, slug), description = COALESCE($4, description),
             brand_id = CASE WHEN $5 THEN $6 ELSE brand_id END,
             category_id = CASE WHEN $7 THEN $8 ELSE category_id END,
             status = COALESCE($9, status), updated_at = now()
         WHERE id = $1",
        id,
        changes.name,
        changes.slug,
        changes.description,
        changes.brand_id.is_some(),
        changes.brand_id.flatten(),
        changes.category_id.is_some(),
        changes.category_id.flatten(),
        changes.status.map(|s| s.as_str()),
    )
    .execute(&mut *tx)
    .await
    .map_err(product_write_error)?;
    if let Some(tags) = &changes.tags {
        set_tags(&mut tx, id, tags).await?;
    }
    tx.commit().await?;
    Ok(Json(staff_detail(&state, id).await?))
}

/// Archives a product (staff): it leaves lists, search and its public page; orders that
/// reference its variants keep them.
#[utoipa::path(
    delete,
    path = "/products/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The product's id")),
    responses(
        (status = 204, description = "Archived"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn archive_product(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let archived = sqlx::query!(
        "UPDATE products SET status = 'archived', updated_at = now() WHERE id = $1 AND status <> 'archived'", id
    )
    .execute(&state.db.write)
    .await?;
    if archived.rows_affected() == 0 {
        sqlx::query_scalar!("SELECT id FROM products WHERE id = $1", id)
            .fetch_optional(&state.db.write)
            .await?
            .ok_or(ApiError::NotFound("product"))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a variant to a product (staff).
#[utoipa::path(
    post,
    path = "/products/{id}/variants",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The product's id")),
    request_body = NewVariant,
    responses(
        (status = 201, body = VariantView),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sku_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_variant(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
    Json(new): Json<NewVariant>,
) -> ApiResult<(StatusCode, Json<VariantView>)> {
    let currency = state.config.shop.currency;
    let mut checks = Checks::new();
    let input = check_variant(&mut checks, "", &new, currency);
    checks.finish()?;
    let mut tx = state.db.write.begin().await?;
    lock_product(&mut tx, id).await?;
    let ids = insert_variants(&mut tx, id, std::slice::from_ref(&input), currency).await?;
    refresh_price(&mut tx, id).await?;
    tx.commit().await?;
    let variant_id = *ids
        .first()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("variant insert returned no id")))?;
    Ok((
        StatusCode::CREATED,
        Json(load_variant(&state, variant_id).await?),
    ))
}

/// Changes a variant's name, price or whether it is on sale (staff).
#[utoipa::path(
    patch,
    path = "/variants/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The variant's id")),
    request_body = VariantPatch,
    responses(
        (status = 200, body = VariantView),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such variant", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_variant(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
    Json(patch): Json<VariantPatch>,
) -> ApiResult<Json<VariantView>> {
    let currency = state.config.shop.currency;
    let name = patch.check(currency)?;
    let mut tx = state.db.write.begin().await?;
    let product_id = sqlx::query_scalar!("SELECT product_id FROM variants WHERE id = $1", id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound("variant"))?;
    lock_product(&mut tx, product_id).await?;
    sqlx::query!(
        "UPDATE variants
         SET name = COALESCE($2, name), price_minor = COALESCE($3, price_minor),
             currency = CASE WHEN $3::bigint IS NULL THEN currency ELSE $4 END,
             active = COALESCE($5, active)
         WHERE id = $1",
        id,
        name,
        patch.price.map(|p| p.amount_minor),
        currency.as_str(),
        patch.active,
    )
    .execute(&mut *tx)
    .await?;
    refresh_price(&mut tx, product_id).await?;
    tx.commit().await?;
    Ok(Json(load_variant(&state, id).await?))
}
