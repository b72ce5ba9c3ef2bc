//! `GET /search`: full-text search over product names (weight A) and descriptions (B),
//! tolerant of typos.
//!
//! Two statements. First, each typed word that is not a known catalog word is replaced by
//! the most similar known one (pg_trgm trigram similarity over `catalog_words`, kept from
//! product names and descriptions by triggers): "lether jaket" becomes "leather jacket".
//! Then products matching either the query as typed (`websearch_to_tsquery`) or the
//! corrected words are ranked with `ts_rank_cd`; matches of the query as typed get one
//! point more, so exact words always rank before corrected ones.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::types::Json as SqlJson;
use utoipa::{IntoParams, ToSchema};

use super::{
    cursor::{wrong_ordering, After},
    fields::Checks,
    list::{check_limit, SummaryRow},
    model::{ProductSummary, TagRef},
};
use crate::{
    error::{ApiResult, Json, Problem, Query},
    state::AppState,
};

pub const MAX_QUERY_CHARS: usize = 200;
/// Words looked up for typos; the rest of a long query is matched as typed.
const MAX_WORDS: usize = 12;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What the shopper typed (websearch syntax: "quoted phrases", -excluded, or).
    #[param(min_length = 1, max_length = 200)]
    pub q: String,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page of the same search.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub product: ProductSummary,
    /// Relevance: higher is better; 1 or more when the words matched as typed.
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// The words of a plain query, lower-cased, for typo correction. A query that uses
/// websearch syntax (quotes, exclusions, `or`) is taken as typed.
fn words(q: &str) -> Vec<String> {
    let syntax = q.contains('"')
        || q.split_whitespace()
            .any(|t| t.starts_with('-') || t.eq_ignore_ascii_case("or"));
    if syntax {
        return Vec::new();
    }
    let mut words: Vec<String> = Vec::new();
    for word in q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_WORDS {
            break;
        }
    }
    words
}

/// A checked search request.
#[derive(Debug)]
struct Checked {
    q: String,
    limit: i64,
    /// Score and id of the last hit of the previous page.
    after: Option<(f64, i64)>,
}

fn check(query: &SearchQuery) -> ApiResult<Checked> {
    let mut checks = Checks::new();
    let q = query.q.trim();
    if q.is_empty() {
        checks.fail("q", "must not be empty");
    } else if q.chars().count() > MAX_QUERY_CHARS {
        checks.fail("q", format!("must be at most {MAX_QUERY_CHARS} characters"));
    } else if q.chars().any(char::is_control) {
        checks.fail("q", "must not contain control characters");
    }
    let limit = check_limit(&mut checks, query.limit);
    checks.finish()?;
    let after = match query.cursor.as_deref().map(After::decode).transpose()? {
        None => None,
        Some(After::Score { score, id }) => Some((score, id)),
        Some(_) => return Err(wrong_ordering()),
    };
    Ok(Checked {
        q: q.to_owned(),
        limit,
        after,
    })
}

/// Products matching the words, best first, a page at a time.
#[utoipa::path(
    get,
    path = "/search",
    tag = "catalog",
    params(SearchQuery),
    responses(
        (status = 200, body = SearchPage),
        (status = 400, description = "`invalid_query` (no q) or `invalid_cursor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or over-long q, or an out-of-range limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<SearchPage>> {
    let Checked { q, limit, after } = check(&query)?;
    let words = words(&q);
    let corrected = if words.is_empty() {
        String::new()
    } else {
        sqlx::query_scalar!(
            r#"SELECT string_agg(COALESCE(
                   CASE WHEN length(t.typed) >= 3 THEN
                       (SELECT w.word FROM catalog_words w WHERE w.word % t.typed
                        ORDER BY w.word <-> t.typed, w.word LIMIT 1)
                   END,
                   t.typed), ' ' ORDER BY t.i) AS "corrected!"
               FROM unnest($1::text[]) WITH ORDINALITY AS t(typed, i)"#,
            &words,
        )
        .fetch_one(&state.db.read)
        .await?
    };

    let (after_score, after_id) = after.unzip();
    let rows = sqlx::query!(
        r#"WITH terms AS MATERIALIZED (
               SELECT catalog_exact_query($1) AS exact, catalog_fuzzy_query($1, $2) AS any_match
           ), hit AS (
               SELECT p.id, ((p.search @@ terms.exact)::int + ts_rank_cd(p.search, terms.any_match, 32))::float8 AS score
               FROM products p CROSS JOIN terms
               WHERE p.status = 'active' AND p.price_minor IS NOT NULL
                 AND p.search @@ catalog_fuzzy_query($1, $2)
           ), top AS (
               SELECT hit.id, hit.score FROM hit
               WHERE $3::float8 IS NULL OR hit.score < $3 OR (hit.score = $3 AND hit.id > $4)
               ORDER BY hit.score DESC, hit.id
               LIMIT $5
           ), page AS (
               SELECT p.id, p.slug, p.name, p.brand_id, p.category_id, p.price_minor, p.currency, p.created_at,
                      top.score
               FROM top JOIN products p ON p.id = top.id
           )
           SELECT page.id AS "id!", page.slug AS "slug!", page.name AS "name!",
                  page.price_minor AS "price_minor!", page.currency AS "currency!",
                  page.created_at AS "created_at!", page.score AS "score!",
                  b.id AS "brand_id?", b.slug AS "brand_slug?", b.name AS "brand_name?",
                  c.id AS "category_id?", c.slug AS "category_slug?", c.name AS "category_name?",
                  EXISTS (SELECT 1 FROM variants v JOIN stock s ON s.variant_id = v.id
                          WHERE v.product_id = page.id AND v.active AND s.on_hand > s.reserved) AS "in_stock!",
                  COALESCE((SELECT json_agg(json_build_object('id', t.id, 'slug', t.slug, 'name', t.name)
                                            ORDER BY t.slug)
                            FROM product_tags pt JOIN tags t ON t.id = pt.tag_id
                            WHERE pt.product_id = page.id), '[]') AS "tags!: SqlJson<Vec<TagRef>>"
           FROM page
           LEFT JOIN brands b ON b.id = page.brand_id
           LEFT JOIN categories c ON c.id = page.category_id
           ORDER BY page.score DESC, page.id"#,
        q,
        corrected,
        after_score,
        after_id,
        limit + 1,
    )
    .fetch_all(&state.db.read)
    .await?;

    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let score = row.score;
        let summary = SummaryRow {
            id: row.id,
            slug: row.slug,
            name: row.name,
            price_minor: row.price_minor,
            currency: row.currency,
            created_at: row.created_at,
            brand_id: row.brand_id,
            brand_slug: row.brand_slug,
            brand_name: row.brand_name,
            category_id: row.category_id,
            category_slug: row.category_slug,
            category_name: row.category_name,
            in_stock: row.in_stock,
            tags: row.tags,
        };
        items.push(SearchHit {
            product: summary.into_summary()?,
            score,
        });
    }
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|hit| {
            After::Score {
                score: hit.score,
                id: hit.product.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(SearchPage { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_queries_give_their_words() {
        assert_eq!(words("Lether  JAKET, lether"), ["lether", "jaket"]);
        assert_eq!(words("t-shirt"), ["t", "shirt"]);
        assert!(words("jacket -leather").is_empty());
        assert!(words("\"leather jacket\"").is_empty());
        assert!(words("shirt or blouse").is_empty());
        assert_eq!(words(&"w ".repeat(20)).len(), 1);
    }

    #[test]
    fn queries_are_checked() {
        let query = |q: &str| SearchQuery {
            q: q.into(),
            limit: None,
            cursor: None,
        };
        assert!(check(&query(" ")).is_err());
        assert!(check(&query(&"a".repeat(201))).is_err());
        assert!(check(&query(&"é".repeat(200))).is_ok());
        assert!(check(&query("nul\u{0}byte")).is_err());
        let mut q = query("shirt");
        q.cursor = Some(After::PriceAsc { price: 1, id: 1 }.encode());
        assert_eq!(check(&q).unwrap_err().code(), "invalid_cursor");
    }
}
