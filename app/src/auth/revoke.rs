//! The denylist of access tokens that were revoked before they expired: a token signed
//! out (its `jti`), and every token of a revoked session (its `sid`, the refresh token
//! family). Entries live in Redis exactly as long as a token they name could still be
//! accepted, so the list stays small.
//!
//! Refresh tokens stay in PostgreSQL, which is authoritative. Redis only shortens the life
//! of access tokens; when it is down, revoked access tokens are accepted until they expire
//! (at most `auth.access_ttl_s`), which is what happens without Redis at all.

use time::OffsetDateTime;
use uuid::Uuid;

use super::token::{Claims, JwtKeys};
use crate::redis::{Redis, RedisError};

fn token_key(redis: &Redis, jti: Uuid) -> String {
    redis.key(format_args!("revoked:jti:{}", jti.simple()))
}

fn session_key(redis: &Redis, sid: Uuid) -> String {
    redis.key(format_args!("revoked:sid:{}", sid.simple()))
}

/// Puts one access token on the denylist for the rest of its life.
pub async fn revoke_token(redis: &Redis, jwt: &JwtKeys, claims: &Claims) -> Result<(), RedisError> {
    let Some(jti) = claims.jti else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let left_s = (claims.exp - now).max(0) as u64 + jwt.leeway_s;
    set_for(redis, token_key(redis, jti), left_s).await
}

/// Puts every access token of these sessions on the denylist: none issued before now
/// outlives `access_ttl_s` (and the sessions issue no more).
pub async fn revoke_sessions(
    redis: &Redis,
    jwt: &JwtKeys,
    sids: &[Uuid],
) -> Result<(), RedisError> {
    if sids.is_empty() || !redis.is_on() {
        return Ok(());
    }
    let ttl_ms = (jwt.access_ttl_s + jwt.leeway_s) * 1000;
    let mut pipe = ::redis::pipe();
    for sid in sids {
        pipe.cmd("SET")
            .arg(session_key(redis, *sid))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
    }
    redis
        .run("revoke", |mut conn| async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
}

async fn set_for(redis: &Redis, key: String, seconds: u64) -> Result<(), RedisError> {
    if !redis.is_on() {
        return Ok(());
    }
    redis
        .run("revoke", |mut conn| async move {
            ::redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("PX")
                .arg(seconds * 1000)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
}

/// Whether the token or its session is on the denylist. `Err` when Redis cannot be asked:
/// the caller accepts the token then (see the module's note).
pub async fn is_revoked(redis: &Redis, claims: &Claims) -> Result<bool, RedisError> {
    let keys: Vec<String> = claims
        .jti
        .map(|jti| token_key(redis, jti))
        .into_iter()
        .chain(claims.sid.map(|sid| session_key(redis, sid)))
        .collect();
    if keys.is_empty() || !redis.is_on() {
        return Ok(false);
    }
    let found: u32 = redis
        .run("denylist", |mut conn| async move {
            ::redis::cmd("EXISTS")
                .arg(keys)
                .query_async(&mut conn)
                .await
        })
        .await?;
    Ok(found > 0)
}
