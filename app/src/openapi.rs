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
/// (`split` adds what applies to all of them.)
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

/// The router and the finished document.
pub fn split() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut spec) = api_router().split_for_parts();
    add_rate_limited(&mut spec);
    (router, spec)
}

/// The document as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    split().1
}

/// Every operation under `/api/v1` counts against its client's rate limit (with Redis), so
/// each may answer 429: one shared response, referenced by every operation without one.
fn add_rate_limited(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        header::HeaderBuilder, ContentBuilder, Ref, RefOr, ResponseBuilder, Type,
    };
    let seconds = |description: &str| {
        HeaderBuilder::new()
            .schema(utoipa::openapi::schema::Object::with_type(Type::Integer))
            .description(Some(description))
            .build()
    };
    let response = ResponseBuilder::new()
        .description(
            "`rate_limited`: over the client's request budget; retry after `Retry-After` seconds",
        )
        .header(
            "Retry-After",
            seconds("Seconds until a request is admitted again"),
        )
        .header("RateLimit-Limit", seconds("Requests allowed per period"))
        .header("RateLimit-Remaining", seconds("Requests left now"))
        .header(
            "RateLimit-Reset",
            seconds("Seconds until the whole budget is back"),
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    let components = spec.components.get_or_insert_with(Default::default);
    components
        .responses
        .insert("RateLimited".into(), RefOr::T(response));
    for item in spec.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("429".into())
                .or_insert_with(|| Ref::from_response_name("RateLimited").into());
        }
    }
}
