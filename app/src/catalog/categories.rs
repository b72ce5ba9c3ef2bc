//! The category tree. Each category stores `path`, the ids from its root down to itself,
//! so a subtree is one indexed `path @> ARRAY[id]` and a breadcrumb needs no recursion.
//! Writes lock the table against each other (reads go on), so concurrent moves cannot
//! build a cycle or leave a stale path.

use std::collections::HashMap;

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;

use super::{
    fields::{nullable, Checks},
    model::CategoryRef,
    slug::{self, Slug},
    slug_taken, unique_violation,
};
use crate::{
    auth::Staff,
    error::{ApiError, ApiResult, Json, Path, Problem},
    state::AppState,
};

const NAME_MAX: usize = 100;

/// A category with its subtree.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryNode {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub position: i32,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

/// A category with its breadcrumb and its subtree.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryDetail {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub position: i32,
    /// From the root down to this category, itself included.
    pub path: Vec<CategoryRef>,
    pub children: Vec<CategoryNode>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Derived from the name when absent; needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    /// Absent for a root category.
    pub parent_id: Option<i64>,
    /// Order among its siblings (then by name).
    #[serde(default)]
    pub position: i32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    /// Moves the category (with its subtree) under another one; `null` makes it a root.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub parent_id: Option<Option<i64>>,
    pub position: Option<i32>,
}

struct Row {
    id: i64,
    parent_id: Option<i64>,
    slug: String,
    name: String,
    position: i32,
    path: Vec<i64>,
}

/// A category named in a path: its id, or its slug (slugs always have a letter).
enum Key {
    Id(i64),
    Slug(String),
}

impl Key {
    fn parse(raw: &str) -> ApiResult<Key> {
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            raw.parse()
                .map(Key::Id)
                .map_err(|_| ApiError::NotFound("category"))
        } else if slug::is_valid(raw) {
            Ok(Key::Slug(raw.to_owned()))
        } else {
            Err(ApiError::NotFound("category"))
        }
    }

    fn id(&self) -> Option<i64> {
        match self {
            Key::Id(id) => Some(*id),
            Key::Slug(_) => None,
        }
    }

    fn slug(&self) -> Option<&str> {
        match self {
            Key::Id(_) => None,
            Key::Slug(slug) => Some(slug),
        }
    }
}

/// Children of each parent, in display order (the rows come sorted).
fn tree(rows: &[Row], parent: Option<i64>) -> Vec<CategoryNode> {
    let mut by_parent: HashMap<Option<i64>, Vec<&Row>> = HashMap::new();
    for row in rows {
        by_parent.entry(row.parent_id).or_default().push(row);
    }
    fn build(
        by_parent: &HashMap<Option<i64>, Vec<&Row>>,
        parent: Option<i64>,
    ) -> Vec<CategoryNode> {
        by_parent
            .get(&parent)
            .map(|children| {
                children
                    .iter()
                    .map(|row| CategoryNode {
                        id: row.id,
                        slug: row.slug.clone(),
                        name: row.name.clone(),
                        parent_id: row.parent_id,
                        position: row.position,
                        children: build(by_parent, Some(row.id)),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    build(&by_parent, parent)
}

/// The category with its ancestors and descendants, in one query.
async fn load_detail(db: impl PgExecutor<'_>, key: &Key) -> ApiResult<CategoryDetail> {
    let rows = sqlx::query_as!(
        Row,
        r#"WITH target AS (SELECT id, path FROM categories WHERE id = $1 OR slug = $2 LIMIT 1)
           SELECT c.id AS "id!", c.parent_id, c.slug AS "slug!", c.name AS "name!",
                  c.position AS "position!", c.path AS "path!"
           FROM categories c, target
           WHERE c.path @> ARRAY[target.id] OR c.id = ANY(target.path)
           ORDER BY c.position, c.name, c.id"#,
        key.id(),
        key.slug(),
    )
    .fetch_all(db)
    .await?;
    let target = rows
        .iter()
        .find(|row| match key {
            Key::Id(id) => row.id == *id,
            Key::Slug(slug) => row.slug == *slug,
        })
        .ok_or(ApiError::NotFound("category"))?;
    let by_id: HashMap<i64, &Row> = rows.iter().map(|row| (row.id, row)).collect();
    let path = target
        .path
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|row| CategoryRef {
            id: row.id,
            slug: row.slug.clone(),
            name: row.name.clone(),
        })
        .collect();
    let subtree: Vec<Row> = rows
        .iter()
        .filter(|row| row.path.contains(&target.id) && row.id != target.id)
        .map(|row| Row {
            id: row.id,
            parent_id: row.parent_id,
            slug: row.slug.clone(),
            name: row.name.clone(),
            position: row.position,
            path: Vec::new(),
        })
        .collect();
    Ok(CategoryDetail {
        id: target.id,
        slug: target.slug.clone(),
        name: target.name.clone(),
        parent_id: target.parent_id,
        position: target.position,
        path,
        children: tree(&subtree, Some(target.id)),
    })
}

async fn lock_tree(conn: &mut sqlx::PgConnection) -> ApiResult<()> {
    sqlx::query!("LOCK TABLE categories IN SHARE ROW EXCLUSIVE MODE")
        .execute(conn)
        .await?;
    Ok(())
}

fn parent_not_found() -> ApiError {
    ApiError::invalid("/parent_id", "no category has this id")
}

/// The whole category tree.
#[utoipa::path(
    get,
    path = "/categories",
    tag = "catalog",
    responses((status = 200, description = "Root categories with their subtrees, by position then name", body = Vec<CategoryNode>))
)]
pub async fn list_categories(State(state): State<AppState>) -> ApiResult<Json<Vec<CategoryNode>>> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id, parent_id, slug, name, position, path FROM categories ORDER BY position, name, id"#
    )
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(tree(&rows, None)))
}

/// One category with its breadcrumb and subtree.
#[utoipa::path(
    get,
    path = "/categories/{category}",
    tag = "catalog",
    params(("category" = String, Path, description = "The category's slug (or id)")),
    responses(
        (status = 200, body = CategoryDetail),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_category(
    State(state): State<AppState>,
    Path(category): Path<String>,
) -> ApiResult<Json<CategoryDetail>> {
    let key = Key::parse(&category)?;
    Ok(Json(load_detail(&state.db.read, &key).await?))
}

/// Creates a category (staff).
#[utoipa::path(
    post,
    path = "/categories",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    request_body = NewCategory,
    responses(
        (status = 201, body = CategoryDetail),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields or unknown parent", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_category(
    State(state): State<AppState>,
    _staff: Staff,
    Json(new): Json<NewCategory>,
) -> ApiResult<(StatusCode, Json<CategoryDetail>)> {
    let mut checks = Checks::new();
    let name = checks.line("/name", &new.name, NAME_MAX);
    let slug = checks.slug(new.slug.as_deref(), &name)?;
    checks.finish()?;
    let slug = slug.expect("checked").into_string();

    let mut tx = state.db.write.begin().await?;
    lock_tree(&mut tx).await?;
    if let Some(parent) = new.parent_id {
        sqlx::query_scalar!("SELECT id FROM categories WHERE id = $1", parent)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(parent_not_found)?;
    }
    let id = sqlx::query_scalar!(
        r#"WITH new AS (SELECT nextval(pg_get_serial_sequence('categories', 'id')) AS id)
           INSERT INTO categories (id, parent_id, path, name, slug, position) OVERRIDING SYSTEM VALUE
           SELECT new.id, $1::bigint, COALESCE((SELECT path FROM categories WHERE id = $1), '{}') || new.id,
                  $2, $3, $4
           FROM new
           RETURNING id"#,
        new.parent_id,
        name,
        slug,
        new.position,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| if unique_violation(&e).is_some() { slug_taken() } else { e.into() })?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(load_detail(&state.db.write, &Key::Id(id)).await?),
    ))
}

/// Renames, re-slugs, reorders or moves a category (staff). A move carries the subtree.
#[utoipa::path(
    patch,
    path = "/categories/{category}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("category" = String, Path, description = "The category's id (or slug)")),
    request_body = CategoryPatch,
    responses(
        (status = 200, body = CategoryDetail),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields, unknown parent, or a move under its own subtree", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_category(
    State(state): State<AppState>,
    _staff: Staff,
    Path(category): Path<String>,
    Json(patch): Json<CategoryPatch>,
) -> ApiResult<Json<CategoryDetail>> {
    let key = Key::parse(&category)?;
    let mut checks = Checks::new();
    let name = patch
        .name
        .as_deref()
        .map(|name| checks.line("/name", name, NAME_MAX));
    let slug = match patch.slug.as_deref() {
        Some(slug) => checks
            .absorb(Slug::parse("/slug", slug))?
            .map(Slug::into_string),
        None => None,
    };
    checks.finish()?;

    let mut tx = state.db.write.begin().await?;
    lock_tree(&mut tx).await?;
    let current = sqlx::query!(
        "SELECT id, parent_id FROM categories WHERE id = $1 OR slug = $2",
        key.id(),
        key.slug()
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("category"))?;
    let id = current.id;
    if let Some(parent) = patch
        .parent_id
        .filter(|parent| *parent != current.parent_id)
    {
        let prefix = match parent {
            Some(parent) => {
                let parent_path =
                    sqlx::query_scalar!("SELECT path FROM categories WHERE id = $1", parent)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(parent_not_found)?;
                if parent_path.contains(&id) {
                    return Err(ApiError::invalid(
                        "/parent_id",
                        "a category cannot move under itself or one of its descendants",
                    ));
                }
                parent_path
            }
            None => Vec::new(),
        };
        // Every path in the subtree keeps its part from this category down.
        sqlx::query!(
            "UPDATE categories SET path = $2::bigint[] || path[array_position(path, $1):]
             WHERE path @> ARRAY[$1::bigint]",
            id,
            &prefix,
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        "UPDATE categories
         SET name = COALESCE($2, name), slug = COALESCE($3, slug), position = COALESCE($4, position),
             parent_id = CASE WHEN $5 THEN $6 ELSE parent_id END
         WHERE id = $1",
        id,
        name,
        slug,
        patch.position,
        patch.parent_id.is_some(),
        patch.parent_id.flatten(),
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| if unique_violation(&e).is_some() { slug_taken() } else { e.into() })?;
    tx.commit().await?;
    Ok(Json(load_detail(&state.db.write, &Key::Id(id)).await?))
}

/// Deletes an empty category (staff): no subcategories and no products, archived included.
#[utoipa::path(
    delete,
    path = "/categories/{category}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("category" = String, Path, description = "The category's id (or slug)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`category_not_empty`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_category(
    State(state): State<AppState>,
    _staff: Staff,
    Path(category): Path<String>,
) -> ApiResult<StatusCode> {
    let key = Key::parse(&category)?;
    let mut tx = state.db.write.begin().await?;
    lock_tree(&mut tx).await?;
    let found = sqlx::query!(
        r#"SELECT id,
                  EXISTS (SELECT 1 FROM categories child WHERE child.parent_id = c.id)
                  OR EXISTS (SELECT 1 FROM products p WHERE p.category_id = c.id) AS "in_use!"
           FROM categories c WHERE id = $1 OR slug = $2"#,
        key.id(),
        key.slug(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("category"))?;
    let not_empty = || {
        ApiError::conflict(
            "category_not_empty",
            "the category still has subcategories or products; move or delete them first",
        )
    };
    if found.in_use {
        return Err(not_empty());
    }
    // A product may have been put in it since the check (product writes do not take the lock).
    sqlx::query!("DELETE FROM categories WHERE id = $1", found.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if super::foreign_key_violation(&e).is_some() {
                not_empty()
            } else {
                e.into()
            }
        })?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, parent_id: Option<i64>, position: i32) -> Row {
        Row {
            id,
            parent_id,
            slug: format!("c{id}"),
            name: format!("C{id}"),
            position,
            path: Vec::new(),
        }
    }

    #[test]
    fn tree_nests_children_in_row_order() {
        let rows = [
            row(1, None, 0),
            row(3, Some(1), 0),
            row(2, Some(1), 1),
            row(4, Some(3), 0),
            row(5, None, 1),
        ];
        let roots = tree(&rows, None);
        let ids = |nodes: &[CategoryNode]| nodes.iter().map(|n| n.id).collect::<Vec<_>>();
        assert_eq!(ids(&roots), [1, 5]);
        assert_eq!(ids(&roots[0].children), [3, 2]);
        assert_eq!(ids(&roots[0].children[0].children), [4]);
        assert!(roots[1].children.is_empty());
    }

    #[test]
    fn keys_are_ids_or_slugs() {
        assert!(matches!(Key::parse("42"), Ok(Key::Id(42))));
        assert!(matches!(Key::parse("men-shirts"), Ok(Key::Slug(s)) if s == "men-shirts"));
        assert!(Key::parse("99999999999999999999").is_err());
        assert!(Key::parse("Not A Slug").is_err());
    }
}
