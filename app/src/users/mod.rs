//! Users: profile and address book of the signed-in user. (Order history is the orders
//! domain's `GET /orders`.)

pub mod addresses;
pub mod country;
pub mod fields;
pub mod profile;

use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{auth::password, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(profile::get_me, profile::update_me))
        .merge(addresses::router())
}

/// Creates a staff account or promotes an existing one (the `app staff` command).
pub async fn ensure_staff(
    state: &AppState,
    email: &str,
    name: &str,
    password: String,
) -> anyhow::Result<Uuid> {
    let hash = password::hash(&state.config.auth.argon2, password).await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO users (id, email, password_hash, full_name, role) VALUES ($1, $2, $3, $4, 'staff')
         ON CONFLICT (lower(email)) DO UPDATE SET role = 'staff', password_hash = EXCLUDED.password_hash, updated_at = now()
         RETURNING id",
        Uuid::now_v7(),
        email,
        hash,
        name,
    )
    .fetch_one(&state.db.write)
    .await?;
    Ok(id)
}
