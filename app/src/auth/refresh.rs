//! Refresh tokens: opaque, stored as SHA-256 hashes, rotated on every use. Each sign-in
//! starts a family; each refresh replaces the presented token with a new one of the same
//! family. A token presented after it was replaced means two parties hold it (one of them
//! a thief), so the whole family is revoked.

use sqlx::PgConnection;
use uuid::Uuid;

use super::token::{hash_token, opaque_token};
use crate::error::ApiError;

/// A refresh token and its family, which names the session in access tokens (`sid`).
#[derive(Debug)]
pub struct Session {
    pub refresh_token: String,
    pub family_id: Uuid,
}

/// Starts a new family (a sign-in) and returns its first token.
pub async fn start_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    ttl_s: u64,
) -> Result<Session, ApiError> {
    let family_id = Uuid::now_v7();
    let refresh_token = insert(conn, user_id, family_id, ttl_s).await?;
    Ok(Session {
        refresh_token,
        family_id,
    })
}

async fn insert(
    conn: &mut PgConnection,
    user_id: Uuid,
    family_id: Uuid,
    ttl_s: u64,
) -> Result<String, ApiError> {
    let (token, hash) = opaque_token();
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        Uuid::now_v7(),
        user_id,
        family_id,
        hash,
        ttl_s as f64,
    )
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now replaced by the session's new token.
    Rotated { user_id: Uuid, session: Session },
    /// Unknown or expired: nothing changed.
    Invalid,
    /// Already replaced or revoked: the family has been revoked (commit this!).
    Reused { family_id: Uuid },
}

/// Exchanges `presented` for a new token of its family. The row is locked first, so of two
/// concurrent exchanges of one token the second sees it replaced and is treated as reuse.
pub async fn rotate(
    conn: &mut PgConnection,
    presented: &str,
    ttl_s: u64,
) -> Result<Rotation, ApiError> {
    let Some(row) = sqlx::query!(
        r#"SELECT id, user_id, family_id,
                  replaced_at IS NOT NULL OR revoked_at IS NOT NULL AS "spent!",
                  expires_at <= now() AS "expired!"
           FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"#,
        hash_token(presented)
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Rotation::Invalid);
    };
    if row.spent {
        revoke_family(conn, row.family_id).await?;
        return Ok(Rotation::Reused {
            family_id: row.family_id,
        });
    }
    if row.expired {
        return Ok(Rotation::Invalid);
    }
    sqlx::query!(
        "UPDATE refresh_tokens SET replaced_at = now() WHERE id = $1",
        row.id
    )
    .execute(&mut *conn)
    .await?;
    let refresh_token = insert(conn, row.user_id, row.family_id, ttl_s).await?;
    Ok(Rotation::Rotated {
        user_id: row.user_id,
        session: Session {
            refresh_token,
            family_id: row.family_id,
        },
    })
}

async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> Result<(), ApiError> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Signs out: revokes the family of `presented` if it belongs to `user_id`; a token of
/// someone else, or no token at all, changes nothing. Returns the family it revoked.
pub async fn revoke_family_of(
    conn: &mut PgConnection,
    user_id: Uuid,
    presented: &str,
) -> Result<Option<Uuid>, ApiError> {
    let revoked = sqlx::query_scalar!(
        r#"WITH revoked AS (
             UPDATE refresh_tokens SET revoked_at = now()
             WHERE revoked_at IS NULL
               AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)
             RETURNING family_id)
           SELECT DISTINCT family_id AS "family_id!" FROM revoked"#,
        hash_token(presented),
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(revoked)
}

/// Signs the user out everywhere (after a password change). Returns the families it revoked.
pub async fn revoke_all(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Uuid>, ApiError> {
    let revoked = sqlx::query_scalar!(
        r#"WITH revoked AS (
             UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL
             RETURNING family_id)
           SELECT DISTINCT family_id AS "family_id!" FROM revoked"#,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(revoked)
}
