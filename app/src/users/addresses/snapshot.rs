//! Addresses as other domains see them: a checkout copies a snapshot into the order, so
//! later edits of the address book do not rewrite order history.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{error::ApiError, users::country::CountryCode};

/// The postal part of an address, frozen at the time of use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressSnapshot {
    pub recipient: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    pub country: CountryCode,
    pub phone: Option<String>,
}

/// Which default address is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    Shipping,
    Billing,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shipping => "shipping",
            Self::Billing => "billing",
        }
    }
}

/// The address `address_id` of `user_id`; 404 when it does not exist or belongs to
/// someone else (the two are not told apart).
pub async fn load_address(
    conn: &mut PgConnection,
    user_id: Uuid,
    address_id: Uuid,
) -> Result<AddressSnapshot, ApiError> {
    sqlx::query_as!(
        AddressSnapshot,
        r#"SELECT recipient, line1, line2, city, region, postal_code, country AS "country: CountryCode", phone
           FROM addresses WHERE id = $1 AND user_id = $2"#,
        address_id,
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound("address"))
}

/// The user's default shipping or billing address, if they have chosen one.
pub async fn default_address(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: AddressKind,
) -> Result<Option<AddressSnapshot>, ApiError> {
    Ok(sqlx::query_as!(
        AddressSnapshot,
        r#"SELECT recipient, line1, line2, city, region, postal_code, country AS "country: CountryCode", phone
           FROM addresses
           WHERE user_id = $1
             AND CASE $2::text WHEN 'shipping' THEN is_default_shipping ELSE is_default_billing END"#,
        user_id,
        kind.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?)
}
