//! Access tokens revoked before they expire: by logout, by a reused refresh token, by a
//! password reset. Needs Redis; without it they live until they expire.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    harness::{TestApp, PASSWORD},
    redis::RedisServer,
};

pub(crate) async fn sign_in(app: &TestApp, email: &str) -> (String, String) {
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokens(&body)
}

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn me(app: &TestApp, access: &str) -> (StatusCode, Option<String>) {
    let (status, body) = app.get("/api/v1/users/me", Some(access)).await;
    (status, body["code"].as_str().map(str::to_owned))
}

pub(crate) fn revoked() -> (StatusCode, Option<String>) {
    (StatusCode::UNAUTHORIZED, Some("token_revoked".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_access_token_and_its_session() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| redis.configure(c)).await;
    let user = app.customer().await;
    let (access, refresh) = sign_in(&app, &user.email).await;
    let (other_access, _) = sign_in(&app, &user.email).await;
    assert_eq!(me(&app, &access).await.0, StatusCode::OK);

    // An access token of the same session, issued by a refresh before the logout.
    let (status, rotated) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (rotated_access, rotated_refresh) = tokens(&rotated);

    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&access),
            json!({ "refresh_token": rotated_refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &access).await, revoked());
    assert_eq!(me(&app, &rotated_access).await, revoked(), "same session");
    assert_eq!(
        me(&app, &other_access).await.0,
        StatusCode::OK,
        "another session"
    );
    // Revoked tokens are refused by extractors that allow anonymous access too.
    let (status, body) = app.get("/api/v1/cart", Some(&access)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );

    // The denylist entry lives as long as the token could: a little over its lifetime.
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("shop:revoked:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "the token and its session: {keys:?}");
    for key in keys {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (14 * 60 * 1000..=(15 * 60 + 5) * 1000).contains(&ttl),
            "{key}: {ttl} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_revokes_the_sessions_access_tokens() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| redis.configure(c)).await;
    let user = app.customer().await;
    let (access, refresh) = sign_in(&app, &user.email).await;
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The stolen copy is presented again: the family is revoked, access tokens included.
    let (status, problem) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("refresh_token_reused"))
    );
    assert_eq!(me(&app, &access).await, revoked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_revokes_every_session() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| redis.configure(c)).await;
    let user = app.customer().await;
    let (first, _) = sign_in(&app, &user.email).await;
    let (second, _) = sign_in(&app, &user.email).await;
    // A reset token, made the way the request endpoint makes it.
    let (token, hash) = shop::auth::token::opaque_token();
    sqlx::query(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at)
         VALUES ($1, $2, $3, now() + interval '10 minutes')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user.id)
    .bind(hash)
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, body) = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "a brand new password" }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(me(&app, &first).await, revoked());
    assert_eq!(me(&app, &second).await, revoked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_logout_leaves_the_access_token_to_expire() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (access, refresh) = sign_in(&app, &user.email).await;
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&access),
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &access).await.0, StatusCode::OK);
}

/// Redis at `maxmemory` with `noeviction` (as the Kubernetes manifests run it, docs/k8s.md):
/// revoked tokens stay revoked. The denylist entries are never evicted, and a refused write
/// (`OOM`) does not open the app's circuit breaker, which would skip the denylist too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_keeps_revoked_tokens_revoked() {
    let redis = RedisServer::start_with_args(&["--maxmemory-policy", "noeviction"]);
    // A breaker that opened would skip Redis for far longer than this test's checks take.
    let app = TestApp::spawn_with(|c| {
        redis.configure(c);
        c.redis.breaker_ms = 60_000;
    })
    .await;
    let user = app.customer().await;
    let (first, refresh) = sign_in(&app, &user.email).await;
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&first),
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &first).await, revoked());

    // Full: a maxmemory below what it uses (filling it with data would race Redis freeing
    // client buffers, which lets small writes in again).
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let refused = ::redis::cmd("SET")
        .arg("one:more")
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("OOM"), "{refused}");

    // A logout now cannot record its revocation (the write is refused, as when Redis is
    // down), yet the token revoked before is still refused.
    let (second, refresh) = sign_in(&app, &user.email).await;
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&second),
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &first).await, revoked(), "after a refused write");
    let evicted: String = ::redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(evicted.contains("evicted_keys:0\r\n"), "{evicted}");
}
