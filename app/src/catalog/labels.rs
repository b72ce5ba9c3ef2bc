//! Brands and tags: flat lists of named labels with slugs. Staff create, rename and delete
//! them; a brand still used by a product cannot be deleted, a tag is simply removed from
//! its products.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    fields::Checks,
    model::{BrandRef, TagRef},
    slug::Slug,
    slug_taken, unique_violation,
};
use crate::{
    auth::Staff,
    error::{ApiError, ApiResult, Json, Path, Problem},
    state::AppState,
};

const NAME_MAX: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Derived from the name when absent; needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
}

impl NewLabel {
    fn check(&self) -> ApiResult<(String, String)> {
        let mut checks = Checks::new();
        let name = checks.line("/name", &self.name, NAME_MAX);
        let slug = checks.slug(self.slug.as_deref(), &name)?;
        checks.finish()?;
        Ok((name, slug.expect("checked").into_string()))
    }
}

impl LabelPatch {
    fn check(&self) -> ApiResult<(Option<String>, Option<String>)> {
        let mut checks = Checks::new();
        let name = self
            .name
            .as_deref()
            .map(|name| checks.line("/name", name, NAME_MAX));
        let slug = match self.slug.as_deref() {
            Some(slug) => checks
                .absorb(Slug::parse("/slug", slug))?
                .map(Slug::into_string),
            None => None,
        };
        checks.finish()?;
        Ok((name, slug))
    }
}

fn taken_or(error: sqlx::Error) -> ApiError {
    if unique_violation(&error).is_some() {
        slug_taken()
    } else {
        error.into()
    }
}

/// All brands, by name.
#[utoipa::path(get, path = "/brands", tag = "catalog", responses((status = 200, body = Vec<BrandRef>)))]
pub async fn list_brands(State(state): State<AppState>) -> ApiResult<Json<Vec<BrandRef>>> {
    let brands = sqlx::query_as!(
        BrandRef,
        "SELECT id, slug, name FROM brands ORDER BY name, id"
    )
    .fetch_all(&state.db.read)
    .await?;
    Ok(Json(brands))
}

/// Creates a brand (staff).
#[utoipa::path(
    post,
    path = "/brands",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    request_body = NewLabel,
    responses(
        (status = 201, body = BrandRef),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_brand(
    State(state): State<AppState>,
    _staff: Staff,
    Json(new): Json<NewLabel>,
) -> ApiResult<(StatusCode, Json<BrandRef>)> {
    let (name, slug) = new.check()?;
    let brand = sqlx::query_as!(
        BrandRef,
        "INSERT INTO brands (name, slug) VALUES ($1, $2) RETURNING id, slug, name",
        name,
        slug
    )
    .fetch_one(&state.db.write)
    .await
    .map_err(taken_or)?;
    Ok((StatusCode::CREATED, Json(brand)))
}

/// Renames or re-slugs a brand (staff).
#[utoipa::path(
    patch,
    path = "/brands/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The brand's id")),
    request_body = LabelPatch,
    responses(
        (status = 200, body = BrandRef),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such brand", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_brand(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
    Json(patch): Json<LabelPatch>,
) -> ApiResult<Json<BrandRef>> {
    let (name, slug) = patch.check()?;
    let brand = sqlx::query_as!(
        BrandRef,
        "UPDATE brands SET name = COALESCE($2, name), slug = COALESCE($3, slug) WHERE id = $1
         RETURNING id, slug, name",
        id,
        name,
        slug
    )
    .fetch_optional(&state.db.write)
    .await
    .map_err(taken_or)?
    .ok_or(ApiError::NotFound("brand"))?;
    Ok(Json(brand))
}

/// Deletes a brand no product uses, archived ones included (staff).
#[utoipa::path(
    delete,
    path = "/brands/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The brand's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such brand", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`brand_in_use`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_brand(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let deleted = sqlx::query!("DELETE FROM brands WHERE id = $1", id)
        .execute(&state.db.write)
        .await
        .map_err(|e| {
            if super::foreign_key_violation(&e).is_some() {
                ApiError::conflict(
                    "brand_in_use",
                    "products still have this brand; change or archive them first",
                )
            } else {
                e.into()
            }
        })?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("brand"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// All tags, by name.
#[utoipa::path(get, path = "/tags", tag = "catalog", responses((status = 200, body = Vec<TagRef>)))]
pub async fn list_tags(State(state): State<AppState>) -> ApiResult<Json<Vec<TagRef>>> {
    let tags = sqlx::query_as!(TagRef, "SELECT id, slug, name FROM tags ORDER BY name, id")
        .fetch_all(&state.db.read)
        .await?;
    Ok(Json(tags))
}

/// Creates a tag (staff).
#[utoipa::path(
    post,
    path = "/tags",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    request_body = NewLabel,
    responses(
        (status = 201, body = TagRef),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_tag(
    State(state): State<AppState>,
    _staff: Staff,
    Json(new): Json<NewLabel>,
) -> ApiResult<(StatusCode, Json<TagRef>)> {
    let (name, slug) = new.check()?;
    let tag = sqlx::query_as!(
        TagRef,
        "INSERT INTO tags (name, slug) VALUES ($1, $2) RETURNING id, slug, name",
        name,
        slug
    )
    .fetch_one(&state.db.write)
    .await
    .map_err(taken_or)?;
    Ok((StatusCode::CREATED, Json(tag)))
}

/// Renames or re-slugs a tag (staff).
#[utoipa::path(
    patch,
    path = "/tags/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The tag's id")),
    request_body = LabelPatch,
    responses(
        (status = 200, body = TagRef),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such tag", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`slug_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_tag(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
    Json(patch): Json<LabelPatch>,
) -> ApiResult<Json<TagRef>> {
    let (name, slug) = patch.check()?;
    let tag = sqlx::query_as!(
        TagRef,
        "UPDATE tags SET name = COALESCE($2, name), slug = COALESCE($3, slug) WHERE id = $1 RETURNING id, slug, name",
        id,
        name,
        slug
    )
    .fetch_optional(&state.db.write)
    .await
    .map_err(taken_or)?
    .ok_or(ApiError::NotFound("tag"))?;
    Ok(Json(tag))
}

/// Deletes a tag and removes it from its products (staff).
#[utoipa::path(
    delete,
    path = "/tags/{id}",
    tag = "catalog",
    security(("bearer" = ["staff"])),
    params(("id" = i64, Path, description = "The tag's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 403, response = crate::error::responses::NotStaff),
        (status = 404, description = "No such tag", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_tag(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let deleted = sqlx::query!("DELETE FROM tags WHERE id = $1", id)
        .execute(&state.db.write)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("tag"));
    }
    Ok(StatusCode::NO_CONTENT)
}
