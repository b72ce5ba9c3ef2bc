//! Password reset tokens: opaque, stored as hashes, short-lived and single use. The email
//! that carries one is queued (the job outbox) in the same transaction.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::token::{hash_token, opaque_token};
use crate::error::ApiError;

pub const EMAIL_TEMPLATE: &str = "password_reset";

/// Creates a reset token for the account of `email` (any letter case) and queues the email
/// carrying it. Unknown addresses do nothing, and the caller cannot tell the difference.
pub async fn request(conn: &mut PgConnection, email: &str, ttl_s: u64) -> Result<(), ApiError> {
    let Some(user) = sqlx::query!(
        "SELECT id, email FROM users WHERE lower(email) = lower($1)",
        email.trim()
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let (token, hash) = opaque_token();
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        id,
        user.id,
        hash,
        ttl_s as f64,
    )
    .execute(&mut *conn)
    .await?;
    crate::jobs::enqueue_email(
        &mut *conn,
        &format!("password-reset:{id}"),
        &user.email,
        EMAIL_TEMPLATE,
        json!({ "token": token, "user_id": user.id }),
    )
    .await?;
    Ok(())
}

/// Uses up the reset token `presented`: the user it was made for, or `None` when it is
/// unknown, expired or used. Every other pending reset of that user is used up too, since
/// the password they were meant to replace is about to change.
pub async fn redeem(conn: &mut PgConnection, presented: &str) -> Result<Option<Uuid>, ApiError> {
    let Some(user_id) = sqlx::query_scalar!(
        "SELECT user_id FROM password_resets
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         FOR UPDATE",
        hash_token(presented)
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    sqlx::query!(
        "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(Some(user_id))
}
