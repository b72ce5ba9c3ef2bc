//! SQL of the address book. Every query is scoped to the owner, so another user's address
//! is indistinguishable from a missing one.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    model::{Address, AddressFields, Defaults},
    snapshot::AddressKind,
};
use crate::{error::ApiError, users::country::CountryCode};

/// Locks the owner's row for the rest of the transaction, which serializes changes to one
/// user's address book (the count limit and the single defaults hold under concurrency).
pub async fn lock_owner(conn: &mut PgConnection, user_id: Uuid) -> Result<(), ApiError> {
    sqlx::query_scalar!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(drop)
        .ok_or(ApiError::Unauthorized("this account no longer exists"))
}

pub async fn list(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Address>, ApiError> {
    Ok(sqlx::query_as!(
        Address,
        r#"SELECT id, label, recipient, line1, line2, city, region, postal_code,
                  country AS "country: CountryCode", phone, is_default_shipping, is_default_billing,
                  created_at, updated_at
           FROM addresses WHERE user_id = $1 ORDER BY created_at, id"#,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn find(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> Result<Address, ApiError> {
    sqlx::query_as!(
        Address,
        r#"SELECT id, label, recipient, line1, line2, city, region, postal_code,
                  country AS "country: CountryCode", phone, is_default_shipping, is_default_billing,
                  created_at, updated_at
           FROM addresses WHERE id = $1 AND user_id = $2"#,
        id,
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound("address"))
}

pub async fn count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM addresses WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// Takes the default of `kind` away from the user's other addresses. Must run before the
/// statement that gives it to `keep`: the partial unique indexes allow one default per kind.
pub async fn clear_default(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: AddressKind,
    keep: Uuid,
) -> Result<(), ApiError> {
    sqlx::query!(
        "UPDATE addresses
         SET is_default_shipping = is_default_shipping AND $3::text <> 'shipping',
             is_default_billing = is_default_billing AND $3::text <> 'billing',
             updated_at = now()
         WHERE user_id = $1 AND id <> $2
           AND CASE $3::text WHEN 'shipping' THEN is_default_shipping ELSE is_default_billing END",
        user_id,
        keep,
        kind.as_str()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
    fields: &AddressFields,
    defaults: Defaults,
) -> Result<Address, ApiError> {
    Ok(sqlx::query_as!(
        Address,
        r#"INSERT INTO addresses (id, user_id, label, recipient, line1, line2, city, region, postal_code,
                                  country, phone, is_default_shipping, is_default_billing)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           RETURNING id, label, recipient, line1, line2, city, region, postal_code,
                     country AS "country: CountryCode", phone, is_default_shipping, is_default_billing,
                     created_at, updated_at"#,
        id,
        user_id,
        fields.label,
        fields.recipient,
        fields.line1,
        fields.line2,
        fields.city,
        fields.region,
        fields.postal_code,
        fields.country.as_str(),
        fields.phone,
        defaults.shipping,
        defaults.billing,
    )
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn update(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
    fields: &AddressFields,
    defaults: Defaults,
) -> Result<Address, ApiError> {
    sqlx::query_as!(
        Address,
        r#"UPDATE addresses
           SET label = $3, recipient = $4, line1 = $5, line2 = $6, city = $7, region = $8,
               postal_code = $9, country = $10, phone = $11, is_default_shipping = $12,
               is_default_billing = $13, updated_at = now()
           WHERE id = $1 AND user_id = $2
           RETURNING id, label, recipient, line1, line2, city, region, postal_code,
                     country AS "country: CountryCode", phone, is_default_shipping, is_default_billing,
                     created_at, updated_at"#,
        id,
        user_id,
        fields.label,
        fields.recipient,
        fields.line1,
        fields.line2,
        fields.city,
        fields.region,
        fields.postal_code,
        fields.country.as_str(),
        fields.phone,
        defaults.shipping,
        defaults.billing,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound("address"))
}

/// Whether there was such an address to delete.
pub async fn delete(conn: &mut PgConnection, user_id: Uuid, id: Uuid) -> Result<bool, ApiError> {
    let result = sqlx::query!(
        "DELETE FROM addresses WHERE id = $1 AND user_id = $2",
        id,
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() > 0)
}
