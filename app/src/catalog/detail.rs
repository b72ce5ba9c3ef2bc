//! A product page: the product with brand, category breadcrumb, tags and variants with
//! their availability, built as one JSON document by one query.

use axum::extract::State;
use sqlx::{types::Json as SqlJson, PgExecutor};

use super::{model::ProductDetail, slug};
use crate::{
    error::{ApiError, ApiResult, Json, Path, Problem},
    state::AppState,
};

/// Who is looking: the public sees active products and their active variants; staff
/// (in the responses to their writes) see every status and every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Public,
    Staff,
}

/// The product by id or slug, or None when it does not exist or `view` may not see it.
pub async fn load(
    db: impl PgExecutor<'_>,
    id: Option<i64>,
    slug: Option<&str>,
    view: View,
) -> ApiResult<Option<ProductDetail>> {
    let staff = view == View::Staff;
    let detail = sqlx::query_scalar!(
        r#"SELECT json_build_object(
               'id', p.id, 'slug', p.slug, 'name', p.name, 'description', p.description, 'status', p.status,
               'brand', (SELECT json_build_object('id', b.id, 'slug', b.slug, 'name', b.name)
                         FROM brands b WHERE b.id = p.brand_id),
               'category', (SELECT json_build_object('id', c.id, 'slug', c.slug, 'name', c.name,
                                'path', (SELECT json_agg(json_build_object('id', a.id, 'slug', a.slug, 'name', a.name)
                                                         ORDER BY crumb.depth)
                                         FROM unnest(c.path) WITH ORDINALITY AS crumb(id, depth)
                                         JOIN categories a ON a.id = crumb.id))
                            FROM categories c WHERE c.id = p.category_id),
               'tags', COALESCE((SELECT json_agg(json_build_object('id', t.id, 'slug', t.slug, 'name', t.name)
                                                 ORDER BY t.slug)
                                 FROM product_tags pt JOIN tags t ON t.id = pt.tag_id
                                 WHERE pt.product_id = p.id), '[]'),
               'price', CASE WHEN p.price_minor IS NOT NULL
                             THEN json_build_object('amount_minor', p.price_minor, 'currency', p.currency) END,
               'in_stock', EXISTS (SELECT 1 FROM variants v JOIN stock s ON s.variant_id = v.id
                                   WHERE v.product_id = p.id AND v.active AND s.on_hand > s.reserved),
               'variants', COALESCE((
                   SELECT json_agg(json_build_object(
                              'id', v.id, 'product_id', v.product_id, 'sku', v.sku, 'name', v.name,
                              'price', json_build_object('amount_minor', v.price_minor, 'currency', v.currency),
                              'attributes', v.attributes, 'active', v.active,
                              'available', COALESCE(st.available, 0),
                              'in_stock', COALESCE(st.available, 0) > 0)
                          ORDER BY v.price_minor, v.id)
                   FROM variants v
                   LEFT JOIN LATERAL (SELECT sum(s.on_hand - s.reserved) AS available
                                      FROM stock s WHERE s.variant_id = v.id) st ON true
                   WHERE v.product_id = p.id AND (v.active OR $3)), '[]'),
               'created_at', p.created_at, 'updated_at', p.updated_at
           ) AS "detail!: SqlJson<ProductDetail>"
           FROM products p
           WHERE p.id = COALESCE($1, (SELECT bs.id FROM products bs WHERE bs.slug = $2))
             AND (p.status = 'active' OR $3)"#,
        id,
        slug,
        staff,
    )
    .fetch_optional(db)
    .await?;
    Ok(detail.map(|json| json.0))
}

/// One active product with everything its page shows.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "catalog",
    params(("id" = i64, Path, description = "The product's id")),
    responses(
        (status = 200, body = ProductDetail),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active product", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<ProductDetail>> {
    let detail = load(&state.db.read, Some(id), None, View::Public).await?;
    detail.map(Json).ok_or(ApiError::NotFound("product"))
}

/// One active product, by its slug.
#[utoipa::path(
    get,
    path = "/products/by-slug/{slug}",
    tag = "catalog",
    params(("slug" = String, Path, description = "The product's slug")),
    responses(
        (status = 200, body = ProductDetail),
        (status = 404, description = "No such active product", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_product_by_slug(
    State(state): State<AppState>,
    Path(product_slug): Path<String>,
) -> ApiResult<Json<ProductDetail>> {
    if !slug::is_valid(&product_slug) {
        return Err(ApiError::NotFound("product"));
    }
    let detail = load(&state.db.read, None, Some(&product_slug), View::Public).await?;
    detail.map(Json).ok_or(ApiError::NotFound("product"))
}
