//! Tests of the auth domain: registration, login, refresh rotation, logout, password reset,
//! access token checks and the cart merge on login.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, TestApp, PASSWORD};

const NEW_PASSWORD: &str = "a much better passphrase";

async fn register(app: &TestApp, email: &str) -> Value {
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "email": email, "password": PASSWORD, "full_name": "Ada Lovelace" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{}", body["code"]);
    body
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({ "refresh_token": token }),
    )
    .await
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// The reset token in the newest password reset email to `email`.
async fn reset_token_sent_to(app: &TestApp, email: &str) -> String {
    let payload: Value = sqlx::query_scalar(
        "SELECT payload->'data' FROM job_outbox
         WHERE payload->>'recipient' = $1 AND payload->>'template' = 'password_reset'
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    payload["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_refresh_and_logout() {
    let app = TestApp::spawn().await;
    let registered = register(&app, "Ada@Example.com").await;
    assert_eq!(registered["token_type"], "Bearer");
    assert_eq!(registered["expires_in"], 15 * 60);
    assert_eq!(
        registered["user"]["email"], "Ada@Example.com",
        "stored as given"
    );
    assert_eq!(registered["user"]["role"], "customer");
    assert_eq!(registered["user"]["full_name"], "Ada Lovelace");
    let (status, me) = app
        .get("/api/v1/users/me", registered["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "{}", me["code"]);
    assert_eq!(me["id"], registered["user"]["id"]);

    // Any letter case signs in.
    let (status, session) = login(&app, " ada@example.COM ", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{}", session["code"]);
    assert_eq!(session["user"]["id"], registered["user"]["id"]);
    let access = session["access_token"].as_str().unwrap().to_owned();

    let (status, rotated) = refresh(&app, &refresh_token(&session)).await;
    assert_eq!(status, StatusCode::OK, "{}", rotated["code"]);
    assert_ne!(refresh_token(&rotated), refresh_token(&session));
    assert_eq!(rotated["user"]["id"], registered["user"]["id"]);
    assert_eq!(
        app.get("/api/v1/users/me", rotated["access_token"].as_str())
            .await
            .0,
        StatusCode::OK
    );

    // Logging out needs the access token, and ends the session's whole family.
    let body = json!({ "refresh_token": refresh_token(&rotated) });
    assert_eq!(
        app.post("/api/v1/auth/logout", None, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app.post("/api/v1/auth/logout", Some(&access), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = refresh(&app, &refresh_token(&rotated)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", problem["code"]);
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND replaced_at IS NULL",
    )
    .bind(Uuid::parse_str(registered["user"]["id"].as_str().unwrap()).unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(live, 1, "only the registration's session is left");
    // The registration's session is another family and still works.
    assert_eq!(
        refresh(&app, &refresh_token(&registered)).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_taken_in_any_letter_case() {
    let app = TestApp::spawn().await;
    register(&app, "grace@example.com").await;
    let (status, problem) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "email": "GRACE@Example.com", "password": PASSWORD, "full_name": "Impostor" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{}", problem["code"]);
    assert_eq!(problem["code"], "email_taken");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = 'grace@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_each_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({ "email": "ada@example.com", "password": "too short", "full_name": "Ada" }),
            "/password",
        ),
        (
            json!({ "email": "ada@example.com", "password": "x".repeat(129), "full_name": "Ada" }),
            "/password",
        ),
        (
            json!({ "email": "not an email", "password": PASSWORD, "full_name": "Ada" }),
            "/email",
        ),
        (
            json!({ "email": "ada@@example.com", "password": PASSWORD, "full_name": "Ada" }),
            "/email",
        ),
        (
            json!({ "email": "ada@example.com", "password": PASSWORD, "full_name": "   " }),
            "/full_name",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.post("/api/v1/auth/register", None, body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            problem["code"]
        );
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{}",
            problem["errors"]
        );
    }
    // Customers only: a role cannot be asked for.
    let (status, problem) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "email": "boss@example.com", "password": PASSWORD, "full_name": "Boss", "role": "staff" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        problem["code"]
    );
    let (status, problem) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        problem["code"]
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (status, wrong_password) = login(&app, &user.email, "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown_email) = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password["code"], "invalid_credentials");
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(login(&app, &user.email, PASSWORD).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_revokes_its_family() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (_, first) = login(&app, &user.email, PASSWORD).await;
    let (_, other_session) = login(&app, &user.email, PASSWORD).await;
    let (status, second) = refresh(&app, &refresh_token(&first)).await;
    assert_eq!(status, StatusCode::OK);

    // Someone presents the replaced token again: both it and its successor die.
    let (status, problem) = refresh(&app, &refresh_token(&first)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["code"], "refresh_token_reused");
    let (status, problem) = refresh(&app, &refresh_token(&second)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["code"], "refresh_token_reused");
    let unrevoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE family_id =
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL",
    )
    .bind(shop::auth::token::hash_token(&refresh_token(&first)))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(unrevoked, 0);
    // Another session of the same user is another family.
    assert_eq!(
        refresh(&app, &refresh_token(&other_session)).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_refreshes_with_one_token_one_wins() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (_, session) = login(&app, &user.email, PASSWORD).await;
    let token = refresh_token(&session);
    // Hold the token's row so both requests are inside their transactions, queued on it,
    // before either can finish: the race is then certain, not a matter of timing.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(shop::auth::token::hash_token(&token))
        .execute(&mut *blocker)
        .await
        .unwrap();
    let both = tokio::spawn({
        let (base, client, token) = (app.base.clone(), app.client.clone(), token.clone());
        async move {
            let send = || async {
                let response = client
                    .post(format!("{base}/api/v1/auth/refresh"))
                    .json(&json!({ "refresh_token": token }))
                    .send()
                    .await
                    .unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            };
            futures::join!(send(), send())
        }
    });
    let mut waiting = 0i64;
    for _ in 0..200 {
        waiting = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, 2, "both refreshes wait for the token's row");
    blocker.commit().await.unwrap();
    let ((a, body_a), (b, body_b)) = both.await.unwrap();
    let mut statuses = [a, b];
    statuses.sort();
    // Codes only: the bodies hold tokens.
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED],
        "{} {}",
        body_a["code"],
        body_b["code"]
    );
    let loser = if a == StatusCode::OK { body_b } else { body_a };
    assert_eq!(loser["code"], "refresh_token_reused");
    let replaced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND replaced_at IS NOT NULL",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(replaced, 1, "exactly one refresh succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_expired_refresh_tokens_are_invalid() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (status, problem) = refresh(&app, "not-a-token-we-issued").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
    );

    let (_, session) = login(&app, &user.email, PASSWORD).await;
    sqlx::query(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 minute' WHERE user_id = $1",
    )
    .bind(user.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let (status, problem) = refresh(&app, &refresh_token(&session)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
    );
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({ "token": "wrong field" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_with_someone_elses_refresh_token_revokes_nothing() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.customer().await, app.customer().await);
    let (_, bobs_session) = login(&app, &bob.email, PASSWORD).await;
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&alice.token),
            json!({ "refresh_token": refresh_token(&bobs_session) }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(&app, &refresh_token(&bobs_session)).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_end_to_end() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (_, session) = login(&app, &user.email, PASSWORD).await;

    // Known and unknown addresses get the same answer; only the known one gets an email.
    let (status, body) = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            json!({ "email": user.email.to_uppercase() }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let (status, body) = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let emails: Vec<(String, Value)> = sqlx::query_as(
        "SELECT payload->>'recipient', payload->'data' FROM job_outbox WHERE payload->>'template' = 'password_reset'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].0, user.email);
    assert_eq!(emails[0].1["user_id"], user.id.to_string());
    let token = reset_token_sent_to(&app, &user.email).await;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM password_resets WHERE token_hash = $1")
            .bind(shop::auth::token::hash_token(&token))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 1, "the token is stored only as its hash");

    let (status, problem) = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "short" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "/new_password");

    let (status, body) = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{}", body["code"]);
    assert_eq!(
        login(&app, &user.email, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, &user.email, NEW_PASSWORD).await.0,
        StatusCode::OK
    );
    // Every session from before the reset is over.
    assert_eq!(
        refresh(&app, &refresh_token(&session)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Single use.
    let (status, problem) = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({ "token": token, "new_password": "yet another passphrase" }),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_reset_token"))
    );
    assert_eq!(
        login(&app, &user.email, NEW_PASSWORD).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unknown_reset_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    app.post(
        "/api/v1/auth/password-reset",
        None,
        json!({ "email": user.email }),
    )
    .await;
    let token = reset_token_sent_to(&app, &user.email).await;
    sqlx::query("UPDATE password_resets SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    for token in [token.as_str(), "made-up"] {
        let (status, problem) = app
            .post(
                "/api/v1/auth/password-reset/confirm",
                None,
                json!({ "token": token, "new_password": NEW_PASSWORD }),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_reset_token"))
        );
    }
    assert_eq!(
        login(&app, &user.email, PASSWORD).await.0,
        StatusCode::OK,
        "the password is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_of_another_secret_or_expired_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&user.token)).await.0,
        StatusCode::OK
    );

    let foreign = shop::auth::token::JwtKeys::new(&harness::config("postgres://unused").auth);
    let forged = foreign.issue(user.id, shop::auth::Role::Staff);
    let (status, problem) = app.get("/api/v1/users/me", Some(&forged)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = shop::auth::token::Claims {
        sub: user.id,
        role: shop::auth::Role::Customer,
        iat: now - 3600,
        exp: now - 60,
        iss: "shop".into(),
        jti: None,
        sid: None,
    };
    let secret = secrecy::ExposeSecret::expose_secret(&app.state.config.auth.jwt_secret).to_owned();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        app.get("/api/v1/users/me", Some(&expired)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/users/me", Some("garbage")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/users/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// An anonymous cart (made directly in the database) with `quantity` of `variant_id`.
async fn anonymous_cart(app: &TestApp, variant_id: i64, quantity: i32) -> String {
    let (token, hash) = shop::auth::token::opaque_token();
    assert_eq!(hash, shop::auth::token::hash_token(&token));
    let cart = Uuid::now_v7();
    sqlx::query("INSERT INTO carts (id, token_hash) VALUES ($1, $2)")
        .bind(cart)
        .bind(hash)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO cart_lines (cart_id, variant_id, quantity) VALUES ($1, $2, $3)")
        .bind(cart)
        .bind(variant_id)
        .bind(quantity)
        .execute(&app.pool)
        .await
        .unwrap();
    token
}

async fn user_cart_lines(app: &TestApp, user_id: Uuid) -> Vec<(i64, i32)> {
    sqlx::query_as(
        "SELECT l.variant_id, l.quantity FROM cart_lines l JOIN carts c ON c.id = l.cart_id
         WHERE c.user_id = $1 ORDER BY l.variant_id",
    )
    .bind(user_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_merges_the_anonymous_cart() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (both, anonymous_only) = (
        app.stocked_product(1_000, 10).await,
        app.stocked_product(2_500, 10).await,
    );
    // The user's own cart already holds 2 of `both`.
    let own = Uuid::now_v7();
    sqlx::query("INSERT INTO carts (id, user_id) VALUES ($1, $2)")
        .bind(own)
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO cart_lines (cart_id, variant_id, quantity) VALUES ($1, $2, 2)")
        .bind(own)
        .bind(both.variant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let token = anonymous_cart(&app, both.variant_id, 3).await;
    sqlx::query("INSERT INTO cart_lines (cart_id, variant_id, quantity) SELECT id, $2, 1 FROM carts WHERE token_hash = $1")
        .bind(shop::auth::token::hash_token(&token))
        .bind(anonymous_only.variant_id)
        .execute(&app.pool)
        .await
        .unwrap();

    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("X-Cart-Token", &token)
        .json(&json!({ "email": user.email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let mut expected = vec![(both.variant_id, 5), (anonymous_only.variant_id, 1)];
    expected.sort();
    assert_eq!(user_cart_lines(&app, user.id).await, expected);
    let anonymous: i64 = sqlx::query_scalar("SELECT count(*) FROM carts WHERE user_id IS NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(anonymous, 0, "the anonymous cart is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_or_registration_with_a_cart_token_merges_nothing_or_all() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let product = app.stocked_product(1_000, 10).await;
    let token = anonymous_cart(&app, product.variant_id, 2).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("X-Cart-Token", &token)
        .json(&json!({ "email": user.email, "password": "wrong password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(user_cart_lines(&app, user.id).await.is_empty());

    // Registering adopts the cart too.
    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("X-Cart-Token", &token)
        .json(&json!({ "email": "new@example.com", "password": PASSWORD, "full_name": "New Customer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let new_id = Uuid::parse_str(body["user"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        user_cart_lines(&app, new_id).await,
        vec![(product.variant_id, 2)]
    );
}
