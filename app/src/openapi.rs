//! The OpenAPI 3.1 description, generated from the handlers' and types' annotations.
//! `app openapi` prints it; docs/openapi.json is a copy a test keeps current.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop API",
        description = "The storefront API served by the shopctl platform. Errors are RFC 9457 \
                       problem details (`application/problem+json`) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(
        schemas(crate::error::Problem, crate::error::FieldError, crate::money::Money),
        responses(
            crate::error::responses::Unauthenticated,
            crate::error::responses::NotStaff,
            crate::error::responses::NotJson
        )
    ),
    tags(
        (name = "auth", description = "Registration, login, tokens, password reset"),
        (name = "users", description = "Profile, addresses and order history of the signed-in user"),
        (name = "catalog", description = "Products, categories, brands, tags, variants and search"),
        (name = "cart", description = "The shopping cart"),
        (name = "orders", description = "Checkout and the order life cycle"),
        (name = "payments", description = "Payment methods, payments and the gateway webhook"),
        (name = "inventory", description = "Stock per SKU and warehouse (staff)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every domain's routes under `/api/v1`, with the description collected from them.
pub fn api_router() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::catalog::router())
        .merge(crate::cart::router())
        .merge(crate::orders::router())
        .merge(crate::payments::router())
        .merge(crate::inventory::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The document as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}
