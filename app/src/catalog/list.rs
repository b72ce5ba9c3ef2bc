//! `GET /products`: the public product list with filters, four orderings and keyset
//! pagination, in one query.
//!
//! The SQL is composed with `sqlx::QueryBuilder` (every value bound, never spliced)
//! because each combination of filters and ordering deserves its own plan: a static query
//! with `($1 IS NULL OR ...)` terms and a `CASE` in `ORDER BY` could use none of the
//! per-ordering indexes (products_newest, products_price, products_name) and would be
//! planned once, generically, for every combination. sqlx caches one prepared statement
//! per distinct SQL text and connection, so each shape is still parsed only once.

use axum::extract::State;
use serde::Deserialize;
use sqlx::{types::Json as SqlJson, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{
    cursor::{wrong_ordering, After},
    fields::Checks,
    model::{BrandRef, CategoryRef, ProductPage, ProductSummary, TagRef},
    slug,
};
use crate::{
    error::{ApiError, ApiResult, Json, Problem, Query},
    money::Money,
    state::AppState,
};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductSort {
    /// Most recently added first.
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    /// By name, A to Z.
    Name,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A category's slug: products in it or anywhere below it.
    pub category: Option<String>,
    /// A brand's slug.
    pub brand: Option<String>,
    /// A tag's slug.
    pub tag: Option<String>,
    /// Lowest price, in minor units.
    #[param(minimum = 0)]
    pub min_price: Option<i64>,
    /// Highest price, in minor units.
    #[param(minimum = 0)]
    pub max_price: Option<i64>,
    /// Only products some unit of which can be bought now (or, with false, none).
    pub in_stock: Option<bool>,
    #[serde(default)]
    #[param(inline)]
    pub sort: ProductSort,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    pub cursor: Option<String>,
}

/// A filter slug that cannot exist matches nothing; say so instead of querying.
fn filter_slug(checks: &mut Checks, field: &str, value: &Option<String>) {
    if let Some(value) = value {
        if !slug::is_valid(value) {
            checks.fail(field, "not a slug");
        }
    }
}

/// Checks the query; returns the page size.
pub fn check_limit(checks: &mut Checks, limit: Option<i64>) -> i64 {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        checks.fail("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    limit
}

impl ListQuery {
    fn check(&self) -> ApiResult<(i64, Option<After>)> {
        let mut checks = Checks::new();
        filter_slug(&mut checks, "category", &self.category);
        filter_slug(&mut checks, "brand", &self.brand);
        filter_slug(&mut checks, "tag", &self.tag);
        for (field, value) in [("min_price", self.min_price), ("max_price", self.max_price)] {
            if value.is_some_and(|v| v < 0) {
                checks.fail(field, "must not be negative");
            }
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price) {
            if min > max {
                checks.fail("max_price", "must not be below min_price");
            }
        }
        let limit = check_limit(&mut checks, self.limit);
        checks.finish()?;
        let after = self.cursor.as_deref().map(After::decode).transpose()?;
        let fits = matches!(
            (&after, self.sort),
            (None, _)
                | (Some(After::Newest { .. }), ProductSort::Newest)
                | (Some(After::PriceAsc { .. }), ProductSort::PriceAsc)
                | (Some(After::PriceDesc { .. }), ProductSort::PriceDesc)
                | (Some(After::Name { .. }), ProductSort::Name)
        );
        if !fits {
            return Err(wrong_ordering());
        }
        if let Some(After::Newest { created_us, .. }) = &after {
            if created_at(*created_us).is_none() {
                return Err(After::invalid());
            }
        }
        Ok((limit, after))
    }
}

/// A product row of a list or search page, as the shared SELECT list returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct SummaryRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    pub created_at: OffsetDateTime,
    pub brand_id: Option<i64>,
    pub brand_slug: Option<String>,
    pub brand_name: Option<String>,
    pub category_id: Option<i64>,
    pub category_slug: Option<String>,
    pub category_name: Option<String>,
    pub in_stock: bool,
    pub tags: SqlJson<Vec<TagRef>>,
}

impl SummaryRow {
    pub fn into_summary(self) -> ApiResult<ProductSummary> {
        let brand = match (self.brand_id, self.brand_slug, self.brand_name) {
            (Some(id), Some(slug), Some(name)) => Some(BrandRef { id, slug, name }),
            _ => None,
        };
        let category = match (self.category_id, self.category_slug, self.category_name) {
            (Some(id), Some(slug), Some(name)) => Some(CategoryRef { id, slug, name }),
            _ => None,
        };
        Ok(ProductSummary {
            id: self.id,
            slug: self.slug,
            name: self.name,
            brand,
            category,
            price: Money::from_db(self.price_minor, &self.currency)?,
            in_stock: self.in_stock,
            tags: self.tags.0,
        })
    }
}

/// The columns of `SummaryRow` for the products of a `page` CTE (id, slug, name, brand_id,
/// category_id, price_minor, currency, created_at), with brand, category, availability and
/// tags looked up for those rows only.
pub const SUMMARY_SELECT: &str = "
SELECT page.id, page.slug, page.name, page.price_minor, page.currency, page.created_at,
       b.id AS brand_id, b.slug AS brand_slug, b.name AS brand_name,
       c.id AS category_id, c.slug AS category_slug, c.name AS category_name,
       EXISTS (SELECT 1 FROM variants v JOIN stock s ON s.variant_id = v.id
               WHERE v.product_id = page.id AND v.active AND s.on_hand > s.reserved) AS in_stock,
       COALESCE((SELECT json_agg(json_build_object('id', t.id, 'slug', t.slug, 'name', t.name) ORDER BY t.slug)
                 FROM product_tags pt JOIN tags t ON t.id = pt.tag_id
                 WHERE pt.product_id = page.id), '[]') AS tags
FROM page
LEFT JOIN brands b ON b.id = page.brand_id
LEFT JOIN categories c ON c.id = page.category_id";

/// Whether some active variant of product `p` can be bought now.
const AVAILABLE: &str = "EXISTS (SELECT 1 FROM variants v JOIN stock s ON s.variant_id = v.id
                          WHERE v.product_id = p.id AND v.active AND s.on_hand > s.reserved)";

fn created_at(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()
}

fn build(query: &ListQuery, limit: i64, after: Option<&After>) -> QueryBuilder<'static, Postgres> {
    let mut sql = QueryBuilder::new(
        "WITH page AS (
           SELECT p.id, p.slug, p.name, p.brand_id, p.category_id, p.price_minor, p.currency, p.created_at
           FROM products p
           WHERE p.status = 'active' AND p.price_minor IS NOT NULL",
    );
    if let Some(category) = &query.category {
        sql.push(
            " AND p.category_id = ANY(ARRAY(SELECT sub.id FROM categories sub
                 WHERE sub.path @> ARRAY[(SELECT root.id FROM categories root WHERE root.slug = ",
        );
        sql.push_bind(category.clone()).push(")]))");
    }
    if let Some(brand) = &query.brand {
        sql.push(" AND p.brand_id = (SELECT b.id FROM brands b WHERE b.slug = ");
        sql.push_bind(brand.clone()).push(")");
    }
    if let Some(tag) = &query.tag {
        sql.push(
            " AND EXISTS (SELECT 1 FROM product_tags pt WHERE pt.product_id = p.id
                 AND pt.tag_id = (SELECT t.id FROM tags t WHERE t.slug = ",
        );
        sql.push_bind(tag.clone()).push("))");
    }
    if let Some(min) = query.min_price {
        sql.push(" AND p.price_minor >= ").push_bind(min);
    }
    if let Some(max) = query.max_price {
        sql.push(" AND p.price_minor <= ").push_bind(max);
    }
    match query.in_stock {
        Some(true) => {
            sql.push(" AND ").push(AVAILABLE);
        }
        Some(false) => {
            sql.push(" AND NOT ").push(AVAILABLE);
        }
        None => {}
    }
    // Row comparisons match the (key, id) indexes, so a page starts with an index seek.
    match after {
        Some(After::Newest { created_us, id }) => {
            // Checked in `ListQuery::check`.
            let created = created_at(*created_us).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            sql.push(" AND (p.created_at, p.id) < (")
                .push_bind(created)
                .push(", ")
                .push_bind(*id)
                .push(")");
        }
        Some(After::PriceAsc { price, id }) => {
            sql.push(" AND (p.price_minor, p.id) > (")
                .push_bind(*price)
                .push(", ")
                .push_bind(*id)
                .push(")");
        }
        Some(After::PriceDesc { price, id }) => {
            sql.push(" AND (p.price_minor, p.id) < (")
                .push_bind(*price)
                .push(", ")
                .push_bind(*id)
                .push(")");
        }
        Some(After::Name { name, id }) => {
            sql.push(" AND (p.name, p.id) > (")
                .push_bind(name.clone())
                .push(", ")
                .push_bind(*id)
                .push(")");
        }
        Some(After::Score { .. }) | None => {}
    }
    let order = match query.sort {
        ProductSort::Newest => "created_at DESC, id DESC",
        ProductSort::PriceAsc => "price_minor, id",
        ProductSort::PriceDesc => "price_minor DESC, id DESC",
        ProductSort::Name => "name, id",
    };
    sql.push(" ORDER BY p.").push(order.replace(", ", ", p."));
    // One row more than the page tells whether another page follows.
    sql.push(" LIMIT ").push_bind(limit + 1).push(")");
    sql.push(SUMMARY_SELECT);
    sql.push(" ORDER BY page.")
        .push(order.replace(", ", ", page."));
    sql
}

fn cursor_after(sort: ProductSort, row: &SummaryRow) -> After {
    let id = row.id;
    match sort {
        ProductSort::Newest => After::Newest {
            created_us: (row.created_at.unix_timestamp_nanos() / 1000) as i64,
            id,
        },
        ProductSort::PriceAsc => After::PriceAsc {
            price: row.price_minor,
            id,
        },
        ProductSort::PriceDesc => After::PriceDesc {
            price: row.price_minor,
            id,
        },
        ProductSort::Name => After::Name {
            name: row.name.clone(),
            id,
        },
    }
}

/// Active products, filtered and sorted, a page at a time.
///
/// Unknown category, brand or tag slugs match no products. Products with no active
/// variant (and so no price) are not listed.
#[utoipa::path(
    get,
    path = "/products",
    tag = "catalog",
    params(ListQuery),
    responses(
        (status = 200, body = ProductPage),
        (status = 400, description = "`invalid_query` (e.g. an unknown sort) or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out-of-range limit or prices, malformed slugs", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_products(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ProductPage>> {
    let (limit, after) = query.check()?;
    let mut rows: Vec<SummaryRow> = build(&query, limit, after.as_ref())
        .build_query_as()
        .fetch_all(&state.db.read)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|row| cursor_after(query.sort, row).encode())
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(SummaryRow::into_summary)
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(ProductPage { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sort: ProductSort) -> ListQuery {
        ListQuery {
            category: Some("men".into()),
            brand: Some("northwind".into()),
            tag: None,
            min_price: Some(100),
            max_price: None,
            in_stock: Some(true),
            sort,
            limit: None,
            cursor: None,
        }
    }

    #[test]
    fn binds_every_value() {
        let after = After::Name {
            name: "x'; DROP TABLE products; --".into(),
            id: 3,
        };
        let sql = build(&query(ProductSort::Name), 20, Some(&after)).into_sql();
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(!sql.contains("northwind"), "{sql}");
        assert!(sql.contains("ORDER BY p.name, p.id LIMIT $"), "{sql}");
        assert!(sql.contains("(p.name, p.id) > ($"), "{sql}");
    }

    #[test]
    fn cursors_must_fit_the_ordering() {
        let mut q = query(ProductSort::PriceAsc);
        q.cursor = Some(
            After::Name {
                name: "a".into(),
                id: 1,
            }
            .encode(),
        );
        assert_eq!(q.check().unwrap_err().code(), "invalid_cursor");
        q.cursor = Some(After::PriceAsc { price: 5, id: 1 }.encode());
        assert!(q.check().is_ok());
    }

    #[test]
    fn limits_and_prices_are_checked() {
        let mut q = query(ProductSort::Newest);
        q.limit = Some(0);
        q.min_price = Some(500);
        q.max_price = Some(100);
        let Err(ApiError::Validation(errors)) = q.check() else {
            panic!("expected a validation error")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["max_price", "limit"]);
    }
}
