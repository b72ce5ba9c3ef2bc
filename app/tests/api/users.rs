//! Tests of the users domain: the profile and the address book.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shop::users::addresses::{default_address, load_address, AddressKind};
use uuid::Uuid;

use crate::harness::TestApp;

const ADDRESSES: &str = "/api/v1/users/me/addresses";

fn address(recipient: &str) -> Value {
    json!({
        "label": "Home",
        "recipient": recipient,
        "line1": "12 St James's Square",
        "city": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
        "phone": "+44 20 7946 0000",
    })
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, created) = app.post(ADDRESSES, Some(token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

fn at(id: &Value) -> String {
    format!("{ADDRESSES}/{}", id.as_str().unwrap())
}

/// (recipient, is_default_shipping, is_default_billing) of each address, oldest first.
async fn defaults(app: &TestApp, token: &str) -> Vec<(String, bool, bool)> {
    let (status, list) = app.get(ADDRESSES, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["recipient"].as_str().unwrap().to_owned(),
                a["is_default_shipping"].as_bool().unwrap(),
                a["is_default_billing"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_me_shows_only_the_caller() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.customer().await, app.customer().await);
    for user in [&alice, &bob] {
        let (status, me) = app.get("/api/v1/users/me", Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["id"], user.id.to_string());
        assert_eq!(me["email"], user.email);
        assert_eq!(me["role"], "customer");
        assert!(me.get("password_hash").is_none());
    }
    let staff = app.staff().await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&staff.token)).await.1["role"],
        "staff"
    );
    let (status, problem) = app.get("/api/v1/users/me", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_name_can_be_changed_but_nothing_else() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let (status, me) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&user.token),
            Some(json!({ "full_name": "  Grace Hopper " })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["full_name"], "Grace Hopper");
    let stored: String = sqlx::query_scalar("SELECT full_name FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "Grace Hopper");

    // An empty patch changes nothing.
    let (status, me) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&user.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, me["full_name"].as_str()),
        (StatusCode::OK, Some("Grace Hopper"))
    );

    let (status, problem) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&user.token),
            Some(json!({ "full_name": " " })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "/full_name");
    for unknown in [
        json!({ "email": "new@example.com" }),
        json!({ "role": "staff" }),
    ] {
        let (status, problem) = app
            .call(
                Method::PATCH,
                "/api/v1/users/me",
                Some(&user.token),
                Some(unknown),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    }
    let (email, role): (String, String) =
        sqlx::query_as("SELECT email, role FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (email.as_str(), role.as_str()),
        (user.email.as_str(), "customer")
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            None,
            Some(json!({ "full_name": "X" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_created_read_changed_and_deleted() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let token = user.token.as_str();
    let mut body = address(" Ada Lovelace ");
    body["line2"] = json!("Flat 3");
    let created = create(&app, token, body).await;
    assert_eq!(created["recipient"], "Ada Lovelace");
    assert_eq!(created["country"], "GB");
    assert_eq!(created["is_default_shipping"], false);

    let (status, fetched) = app.get(&at(&created["id"]), Some(token)).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &created));
    let (_, list) = app.get(ADDRESSES, Some(token)).await;
    assert_eq!(list, json!([created]));

    // null clears an optional field; absent fields stay.
    let (status, changed) = app
        .call(
            Method::PATCH,
            &at(&created["id"]),
            Some(token),
            Some(json!({ "line2": null, "city": "Bath" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (changed["line2"].clone(), changed["city"].clone()),
        (Value::Null, json!("Bath"))
    );
    assert_eq!(changed["line1"], created["line1"]);

    let snapshot = load_address(
        &mut app.pool.acquire().await.unwrap(),
        user.id,
        Uuid::parse_str(created["id"].as_str().unwrap()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            snapshot.city.as_str(),
            snapshot.line2,
            snapshot.country.as_str()
        ),
        ("Bath", None, "GB")
    );

    let (status, _) = app
        .call(Method::DELETE, &at(&created["id"]), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = app.get(&at(&created["id"]), Some(token)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = app
        .call(Method::DELETE, &at(&created["id"]), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_checked_field_by_field() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let mut body = address("Ada");
    body["country"] = json!("gb");
    body["postal_code"] = json!("");
    body["phone"] = json!("call me maybe");
    let (status, problem) = app.post(ADDRESSES, Some(&user.token), body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["/postal_code", "/country", "/phone"]);

    let mut body = address("Ada");
    body["nickname"] = json!("unknown field");
    assert_eq!(
        app.post(ADDRESSES, Some(&user.token), body).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut body = address("Ada");
    body.as_object_mut().unwrap().remove("city");
    assert_eq!(
        app.post(ADDRESSES, Some(&user.token), body).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.post(ADDRESSES, None, address("Ada")).await.0,
        StatusCode::UNAUTHORIZED
    );

    let created = create(&app, &user.token, address("Ada")).await;
    let (status, problem) = app
        .call(
            Method::PATCH,
            &at(&created["id"]),
            Some(&user.token),
            Some(json!({ "country": "GBR" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "/country");
    let (status, problem) = app
        .get(&format!("{ADDRESSES}/not-a-uuid"), Some(&user.token))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );
    let addresses: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(addresses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_address_does_not_exist_for_you() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.customer().await, app.customer().await);
    let alices = create(&app, &alice.token, address("Alice")).await;
    let path = at(&alices["id"]);

    let (status, problem) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({ "city": "Stolen" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(Method::DELETE, &path, Some(&bob.token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(ADDRESSES, Some(&bob.token)).await.1, json!([]));
    // A made-up id looks the same as someone else's.
    let (status, _) = app
        .get(&format!("{ADDRESSES}/{}", Uuid::now_v7()), Some(&bob.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&path, None).await.0, StatusCode::UNAUTHORIZED);

    let (status, unchanged) = app.get(&path, Some(&alice.token)).await;
    assert_eq!((status, &unchanged), (StatusCode::OK, &alices));
    let mut conn = app.pool.acquire().await.unwrap();
    let id = Uuid::parse_str(alices["id"].as_str().unwrap()).unwrap();
    assert!(load_address(&mut conn, bob.id, id).await.is_err());
    assert_eq!(
        load_address(&mut conn, alice.id, id)
            .await
            .unwrap()
            .recipient,
        "Alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_default_replaces_the_previous_one_of_its_kind() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    let token = user.token.as_str();
    let mut body = address("First");
    body["is_default_shipping"] = json!(true);
    body["is_default_billing"] = json!(true);
    create(&app, token, body).await;
    let mut body = address("Second");
    body["is_default_shipping"] = json!(true);
    let second = create(&app, token, body).await;
    assert_eq!(
        defaults(&app, token).await,
        [
            ("First".to_owned(), false, true),
            ("Second".to_owned(), true, false)
        ]
    );

    // Through PATCH as well.
    let (status, _) = app
        .call(
            Method::PATCH,
            &at(&second["id"]),
            Some(token),
            Some(json!({ "is_default_billing": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        defaults(&app, token).await,
        [
            ("First".to_owned(), false, false),
            ("Second".to_owned(), true, true)
        ]
    );
    let mut conn = app.pool.acquire().await.unwrap();
    assert_eq!(
        default_address(&mut conn, user.id, AddressKind::Billing)
            .await
            .unwrap()
            .unwrap()
            .recipient,
        "Second"
    );

    // Giving a default up leaves none of that kind.
    let (status, _) = app
        .call(
            Method::PATCH,
            &at(&second["id"]),
            Some(token),
            Some(json!({ "is_default_shipping": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        default_address(&mut conn, user.id, AddressKind::Shipping)
            .await
            .unwrap(),
        None
    );

    // Another user's defaults are theirs alone.
    let other = app.customer().await;
    let mut body = address("Other");
    body["is_default_billing"] = json!(true);
    create(&app, &other.token, body).await;
    assert_eq!(
        default_address(&mut conn, user.id, AddressKind::Billing)
            .await
            .unwrap()
            .unwrap()
            .recipient,
        "Second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_book_holds_at_most_twenty() {
    let app = TestApp::spawn().await;
    let user = app.customer().await;
    for n in 0..20 {
        create(&app, &user.token, address(&format!("Recipient {n}"))).await;
    }
    let (status, problem) = app
        .post(ADDRESSES, Some(&user.token), address("One too many"))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_addresses"))
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 20);
    // Others are not affected by this user's limit.
    let other = app.customer().await;
    create(&app, &other.token, address("Fine")).await;
}
