//! Merging an anonymous cart into the user's cart when they sign in.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{auth::token::hash_token, error::ApiError};

/// Moves the lines of the anonymous cart whose token is `cart_token` into `user_id`'s cart
/// (adding quantities of variants in both) and deletes the anonymous cart. An unknown
/// token is ignored: the anonymous cart may have expired.
pub async fn merge_into_user(
    conn: &mut PgConnection,
    cart_token: &str,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let hash = hash_token(cart_token);
    let Some(anonymous) = sqlx::query_scalar!(
        "SELECT id FROM carts WHERE token_hash = $1 FOR UPDATE",
        hash
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let user_cart = sqlx::query_scalar!(
        "INSERT INTO carts (id, user_id) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
         RETURNING id",
        Uuid::now_v7(),
        user_id
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO cart_lines (cart_id, variant_id, quantity)
         SELECT $1, variant_id, quantity FROM cart_lines WHERE cart_id = $2
         ON CONFLICT (cart_id, variant_id)
         DO UPDATE SET quantity = LEAST(cart_lines.quantity + EXCLUDED.quantity, 1000)",
        user_cart,
        anonymous
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM carts WHERE id = $1", anonymous)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
