//! Tests of the catalog domain: categories, brands, tags, products, variants, lists,
//! search and the seed command.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::TestApp;

const V1: &str = "/api/v1";

fn path(p: &str) -> String {
    format!("{V1}{p}")
}

async fn created(app: &TestApp, token: &str, p: &str, body: Value) -> Value {
    let (status, body) = app.post(&path(p), Some(token), body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {p}: {body}");
    body
}

async fn patch(app: &TestApp, token: &str, p: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PATCH, &path(p), Some(token), Some(body))
        .await
}

async fn delete(app: &TestApp, token: &str, p: &str) -> (StatusCode, Value) {
    app.call(Method::DELETE, &path(p), Some(token), None).await
}

async fn get(app: &TestApp, p: &str) -> (StatusCode, Value) {
    app.get(&path(p), None).await
}

fn eur(amount: i64) -> Value {
    json!({ "amount_minor": amount, "currency": "EUR" })
}

/// A product body with one variant per price.
fn product(name: &str, prices: &[i64]) -> Value {
    let sku = Uuid::new_v4().simple().to_string();
    let variants: Vec<Value> = prices
        .iter()
        .enumerate()
        .map(|(i, price)| json!({ "sku": format!("{sku}-{i}"), "name": format!("V{i}"), "price": eur(*price) }))
        .collect();
    json!({ "name": name, "description": format!("About the {name}."), "variants": variants })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

fn id(body: &Value) -> i64 {
    body["id"].as_i64().unwrap()
}

fn problem(body: &Value) -> (&str, Vec<&str>) {
    let fields = body["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["field"].as_str().unwrap()).collect());
    (
        body["code"].as_str().unwrap_or_default(),
        fields.unwrap_or_default(),
    )
}

/// Units on hand in a warehouse of its own (through the stock ledger), minus `reserved`.
async fn stock(app: &TestApp, variant_id: i64, on_hand: i32, reserved: i32) -> i64 {
    let warehouse: i64 =
        sqlx::query_scalar("INSERT INTO warehouses (code, name) VALUES ($1, 'W') RETURNING id")
            .bind(format!("W-{}", Uuid::new_v4().simple()))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    shop::inventory::ledger::restock(
        &mut tx,
        variant_id,
        warehouse,
        on_hand,
        Uuid::nil(),
        Some("test"),
    )
    .await
    .unwrap();
    if reserved > 0 {
        shop::inventory::ledger::reserve(&mut tx, Uuid::now_v7(), variant_id, reserved)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    warehouse
}

fn first_variant(product: &Value) -> i64 {
    product["variants"][0]["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_staff_token() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let staff = app.staff().await;
    let made = created(&app, &staff.token, "/products", product("Guarded", &[100])).await;
    let (product_id, variant_id) = (id(&made), first_variant(&made));
    let writes = [
        (
            Method::POST,
            "/categories".to_owned(),
            json!({ "name": "X" }),
        ),
        (
            Method::PATCH,
            "/categories/1".to_owned(),
            json!({ "name": "X" }),
        ),
        (Method::DELETE, "/categories/1".to_owned(), Value::Null),
        (Method::POST, "/brands".to_owned(), json!({ "name": "X" })),
        (
            Method::PATCH,
            "/brands/1".to_owned(),
            json!({ "name": "X" }),
        ),
        (Method::DELETE, "/brands/1".to_owned(), Value::Null),
        (Method::POST, "/tags".to_owned(), json!({ "name": "X" })),
        (Method::PATCH, "/tags/1".to_owned(), json!({ "name": "X" })),
        (Method::DELETE, "/tags/1".to_owned(), Value::Null),
        (Method::POST, "/products".to_owned(), product("X", &[1])),
        (
            Method::PATCH,
            format!("/products/{product_id}"),
            json!({ "name": "Hijacked" }),
        ),
        (
            Method::DELETE,
            format!("/products/{product_id}"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/products/{product_id}/variants"),
            json!({ "sku": "X-1", "name": "X", "price": eur(1) }),
        ),
        (
            Method::PATCH,
            format!("/variants/{variant_id}"),
            json!({ "price": eur(1) }),
        ),
    ];
    for (method, p, body) in writes {
        let body = (!body.is_null()).then_some(body);
        let (status, problem_body) = app
            .call(method.clone(), &path(&p), None, body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {p}: {problem_body}"
        );
        assert_eq!(problem_body["code"], "unauthorized");
        let (status, problem_body) = app
            .call(method.clone(), &path(&p), Some(&customer.token), body)
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {p}: {problem_body}"
        );
        assert_eq!(problem_body["code"], "forbidden");
    }
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM categories), (SELECT count(*) FROM brands), (SELECT count(*) FROM tags),
                (SELECT count(*) FROM products), (SELECT count(*) FROM variants)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts, (0, 0, 0, 1, 1));
    let (_, detail) = get(&app, &format!("/products/{product_id}")).await;
    assert_eq!(detail["name"], "Guarded");
    assert_eq!(detail["price"], eur(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_manage_categories_brands_and_tags() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();

    let home = created(
        &app,
        t,
        "/categories",
        json!({ "name": "Home & Garden", "position": 2 }),
    )
    .await;
    assert_eq!(home["slug"], "home-garden");
    let clothing = created(
        &app,
        t,
        "/categories",
        json!({ "name": "Clothing", "position": 1 }),
    )
    .await;
    let men = created(
        &app,
        t,
        "/categories",
        json!({ "name": "Men", "parent_id": id(&clothing) }),
    )
    .await;
    let shirts = created(
        &app,
        t,
        "/categories",
        json!({ "name": "Shirts", "slug": "men-shirts", "parent_id": id(&men) }),
    )
    .await;
    assert_eq!(
        shirts["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["clothing", "men", "men-shirts"]
    );
    let women = created(
        &app,
        t,
        "/categories",
        json!({ "name": "Women", "parent_id": id(&clothing) }),
    )
    .await;

    // The tree: roots by position, children by position then name.
    let (status, tree) = get(&app, "/categories").await;
    assert_eq!(status, StatusCode::OK);
    let roots: Vec<&str> = tree
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert_eq!(roots, ["clothing", "home-garden"]);
    assert_eq!(tree[0]["children"][0]["slug"], "men");
    assert_eq!(tree[0]["children"][1]["slug"], "women");
    assert_eq!(tree[0]["children"][0]["children"][0]["slug"], "men-shirts");

    // One category by slug or id: breadcrumb and subtree.
    let (status, one) = get(&app, "/categories/men").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["path"][0]["slug"], "clothing");
    assert_eq!(one["children"][0]["slug"], "men-shirts");
    assert_eq!(
        get(&app, &format!("/categories/{}", id(&men))).await.1["slug"],
        "men"
    );
    assert_eq!(
        get(&app, "/categories/nothing-here").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/categories/Not%20a%20slug").await.0,
        StatusCode::NOT_FOUND
    );

    // Slugs: validated, unique, with an unknown parent refused.
    let (status, body) = app
        .post(
            &path("/categories"),
            Some(t),
            json!({ "name": "Dup", "slug": "men" }),
        )
        .await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "slug_taken")
    );
    let (status, body) = app
        .post(
            &path("/categories"),
            Some(t),
            json!({ "name": "Bad", "slug": "Bad Slug" }),
        )
        .await;
    assert_eq!(
        (status, problem(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            ("validation_failed", vec!["/slug"])
        )
    );
    let (status, body) = app
        .post(&path("/categories"), Some(t), json!({ "name": " " }))
        .await;
    assert_eq!(problem(&body).1, ["/name"], "{status} {body}");
    let (status, body) = app
        .post(
            &path("/categories"),
            Some(t),
            json!({ "name": "Orphan", "parent_id": 999 }),
        )
        .await;
    assert_eq!(
        (status, problem(&body).1),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["/parent_id"])
    );
    let (status, _) = app
        .post(
            &path("/categories"),
            Some(t),
            json!({ "name": "X", "colour": "red" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );

    // Rename and re-slug.
    let (status, renamed) = patch(
        &app,
        t,
        &format!("/categories/{}", id(&women)),
        json!({ "name": "Ladies", "slug": "ladies" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["slug"].as_str()),
        (Some("Ladies"), Some("ladies"))
    );
    let (status, body) = patch(
        &app,
        t,
        &format!("/categories/{}", id(&women)),
        json!({ "slug": "men" }),
    )
    .await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "slug_taken")
    );

    // Brands and tags.
    let brand = created(&app, t, "/brands", json!({ "name": "Crème Brûlée Co." })).await;
    assert_eq!(brand["slug"], "creme-brulee-co");
    let (status, body) = app
        .post(
            &path("/brands"),
            Some(t),
            json!({ "name": "Other", "slug": "creme-brulee-co" }),
        )
        .await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "slug_taken")
    );
    let (status, body) = app
        .post(&path("/brands"), Some(t), json!({ "name": "2024" }))
        .await;
    assert_eq!(
        (status, problem(&body).1),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["/name"]),
        "no slug from digits"
    );
    let (status, renamed) = patch(
        &app,
        t,
        &format!("/brands/{}", id(&brand)),
        json!({ "name": "Brûlée" }),
    )
    .await;
    assert_eq!(
        (status, renamed["name"].as_str(), renamed["slug"].as_str()),
        (StatusCode::OK, Some("Brûlée"), Some("creme-brulee-co"))
    );
    assert_eq!(
        patch(&app, t, "/brands/999999", json!({ "name": "Nobody" }))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let sale = created(&app, t, "/tags", json!({ "name": "Sale" })).await;
    let gift = created(
        &app,
        t,
        "/tags",
        json!({ "name": "Gift Idea", "slug": "gift" }),
    )
    .await;
    let (_, brands) = get(&app, "/brands").await;
    assert_eq!(brands.as_array().unwrap().len(), 1);
    let (_, tags) = get(&app, "/tags").await;
    assert_eq!(
        tags.as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["gift", "sale"]
    );

    // A product in a category and of a brand keeps both from being deleted.
    let body = with(
        with(
            with(product("Shirt", &[1000]), "category_id", json!(id(&shirts))),
            "brand_id",
            json!(id(&brand)),
        ),
        "tags",
        json!(["sale", "gift"]),
    );
    let shirt = created(&app, t, "/products", body).await;
    let (status, body) = delete(&app, t, &format!("/categories/{}", id(&shirts))).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "category_not_empty")
    );
    let (status, body) = delete(&app, t, &format!("/categories/{}", id(&men))).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "category_not_empty"),
        "it has a child"
    );
    let (status, body) = delete(&app, t, &format!("/brands/{}", id(&brand))).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::CONFLICT, "brand_in_use")
    );
    // Deleting a tag takes it off its products.
    assert_eq!(
        delete(&app, t, &format!("/tags/{}", id(&gift))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&app, t, &format!("/tags/{}", id(&gift))).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, detail) = get(&app, &format!("/products/{}", id(&shirt))).await;
    assert_eq!(
        detail["tags"],
        json!([{ "id": id(&sale), "slug": "sale", "name": "Sale" }])
    );
    // An empty category goes.
    assert_eq!(
        delete(&app, t, "/categories/home-garden").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&app, "/categories/home-garden").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&app, t, &format!("/categories/{}", id(&home)))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn paths(app: &TestApp) -> Vec<(String, Vec<String>)> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.slug, ARRAY(SELECT a.slug FROM unnest(c.path) WITH ORDINALITY u(id, n)
                              JOIN categories a ON a.id = u.id ORDER BY u.n)
         FROM categories c ORDER BY c.slug",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows
}

fn path_of<'a>(paths: &'a [(String, Vec<String>)], slug: &str) -> Vec<&'a str> {
    paths
        .iter()
        .find(|(s, _)| s == slug)
        .unwrap()
        .1
        .iter()
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_category_moves_its_subtree_and_refuses_cycles() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    let a = id(&created(&app, t, "/categories", json!({ "name": "A" })).await);
    let b = id(&created(
        &app,
        t,
        "/categories",
        json!({ "name": "B", "parent_id": a }),
    )
    .await);
    let c = id(&created(
        &app,
        t,
        "/categories",
        json!({ "name": "C", "parent_id": b }),
    )
    .await);
    let d = id(&created(&app, t, "/categories", json!({ "name": "D" })).await);
    let in_c = id(&created(
        &app,
        t,
        "/products",
        with(product("Deep", &[100]), "category_id", json!(c)),
    )
    .await);

    let (status, moved) = patch(
        &app,
        t,
        &format!("/categories/{b}"),
        json!({ "parent_id": d }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["parent_id"], d);
    assert_eq!(
        moved["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["d", "b"]
    );
    let p = paths(&app).await;
    assert_eq!(path_of(&p, "b"), ["d", "b"]);
    assert_eq!(path_of(&p, "c"), ["d", "b", "c"]);
    assert_eq!(path_of(&p, "a"), ["a"]);
    // Lists follow: the product is now under D, no longer under A.
    assert_eq!(ids(&get(&app, "/products?category=d").await.1), [in_c]);
    assert!(ids(&get(&app, "/products?category=a").await.1).is_empty());

    // Cycles are refused, and nothing changes.
    for target in [c, b] {
        let (status, body) = patch(
            &app,
            t,
            &format!("/categories/{b}"),
            json!({ "parent_id": target }),
        )
        .await;
        assert_eq!(
            (status, problem(&body).1),
            (StatusCode::UNPROCESSABLE_ENTITY, vec!["/parent_id"]),
            "{body}"
        );
    }
    let (status, body) = patch(
        &app,
        t,
        &format!("/categories/{d}"),
        json!({ "parent_id": c }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(paths(&app).await, p);

    // Back to the root.
    let (status, _) = patch(
        &app,
        t,
        &format!("/categories/{b}"),
        json!({ "parent_id": null }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let p = paths(&app).await;
    assert_eq!(path_of(&p, "b"), ["b"]);
    assert_eq!(path_of(&p, "c"), ["b", "c"]);
    let (_, tree) = get(&app, "/categories").await;
    let roots: Vec<&str> = tree
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert_eq!(roots, ["a", "b", "d"]);
    // Leaving parent_id out leaves the parent alone.
    let (_, renamed) = patch(
        &app,
        t,
        &format!("/categories/{c}"),
        json!({ "name": "C2" }),
    )
    .await;
    assert_eq!(renamed["parent_id"], b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_create_update_and_archive_products() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    let root = id(&created(&app, t, "/categories", json!({ "name": "Clothing" })).await);
    let shirts = id(&created(
        &app,
        t,
        "/categories",
        json!({ "name": "Shirts", "parent_id": root }),
    )
    .await);
    let brand = id(&created(&app, t, "/brands", json!({ "name": "Northwind" })).await);
    created(&app, t, "/tags", json!({ "name": "Sale" })).await;
    created(&app, t, "/tags", json!({ "name": "New" })).await;

    let body = json!({
        "name": "Organic Cotton Oxford Shirt",
        "description": "A shirt for every day.\nMachine washable.",
        "brand_id": brand,
        "category_id": shirts,
        "tags": ["sale"],
        "variants": [
            { "sku": "OX-M", "name": "M", "price": eur(4999), "attributes": { "size": "M" } },
            { "sku": "OX-XL", "name": "XL", "price": eur(5299), "attributes": { "size": "XL" } },
        ],
    });
    let made = created(&app, t, "/products", body).await;
    let product_id = id(&made);
    assert_eq!(made["slug"], "organic-cotton-oxford-shirt");
    assert_eq!(made["status"], "active");
    assert_eq!(made["price"], eur(4999));
    assert_eq!(made["brand"]["slug"], "northwind");
    assert_eq!(made["category"]["path"].as_array().unwrap().len(), 2);
    assert_eq!(made["variants"][0]["attributes"], json!({ "size": "M" }));
    assert_eq!(made["in_stock"], false);

    // The public page, by id and by slug.
    let (status, by_id) = get(&app, &format!("/products/{product_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, by_slug) = get(&app, "/products/by-slug/organic-cotton-oxford-shirt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id, by_slug);
    assert_eq!(
        by_id["description"],
        "A shirt for every day.\nMachine washable."
    );

    // Patch: fields, tags replaced, brand removed.
    let (status, patched) = patch(
        &app,
        t,
        &format!("/products/{product_id}"),
        json!({ "name": "Oxford Shirt", "tags": ["new", "sale"], "brand_id": null, "status": "draft" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Oxford Shirt");
    assert_eq!(
        patched["slug"], "organic-cotton-oxford-shirt",
        "the slug stays"
    );
    assert_eq!(patched["brand"], Value::Null);
    assert_eq!(patched["category"]["id"], shirts, "absent fields stay");
    assert_eq!(
        patched["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["new", "sale"]
    );
    // A draft is hidden from the public.
    assert_eq!(
        get(&app, &format!("/products/{product_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&get(&app, "/products").await.1).is_empty());
    let (status, _) = patch(
        &app,
        t,
        &format!("/products/{product_id}"),
        json!({ "status": "active" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&get(&app, "/products").await.1), [product_id]);

    // Archive: gone from the page, the list and search; the row stays.
    assert_eq!(
        delete(&app, t, &format!("/products/{product_id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&app, t, &format!("/products/{product_id}")).await.0,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    let (status, body) = get(&app, &format!("/products/{product_id}")).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(
        get(&app, "/products/by-slug/organic-cotton-oxford-shirt")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&get(&app, "/products").await.1).is_empty());
    assert!(ids(&get(&app, "/search?q=oxford").await.1).is_empty());
    let status: String = sqlx::query_scalar("SELECT status FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "archived");

    // Unknown products.
    assert_eq!(get(&app, "/products/999999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/products/by-slug/nothing").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/products/by-slug/NOT%20A%20SLUG").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/products/abc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        patch(&app, t, "/products/999999", json!({ "name": "X" }))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&app, t, "/products/999999").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_validation_errors_have_field_pointers() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    created(&app, t, "/tags", json!({ "name": "Sale" })).await;
    let existing = created(&app, t, "/products", product("Existing", &[100])).await;
    let existing_sku = existing["variants"][0]["sku"].as_str().unwrap().to_owned();

    let cases = [
        (
            with(product("A", &[100]), "brand_id", json!(999)),
            vec!["/brand_id"],
        ),
        (
            with(product("A", &[100]), "category_id", json!(999)),
            vec!["/category_id"],
        ),
        (
            with(product("A", &[100]), "tags", json!(["sale", "nope"])),
            vec!["/tags/1"],
        ),
        (
            with(product("A", &[100]), "tags", json!(["Not A Slug"])),
            vec!["/tags/0"],
        ),
        (product("A", &[-1]), vec!["/variants/0/price/amount_minor"]),
        (
            with(product("A", &[]), "name", json!("")),
            vec!["/name", "/variants"],
        ),
        (
            with(product("A", &[100]), "slug", json!("-bad-")),
            vec!["/slug"],
        ),
        (
            json!({ "name": "A", "description": "", "variants": [{ "sku": "has space", "name": "", "price": { "amount_minor": 5, "currency": "USD" } }] }),
            vec![
                "/variants/0/sku",
                "/variants/0/name",
                "/variants/0/price/currency",
            ],
        ),
    ];
    for (body, fields) in cases {
        let (status, problem_body) = app.post(&path("/products"), Some(t), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {problem_body}"
        );
        assert_eq!(
            problem(&problem_body),
            ("validation_failed", fields),
            "{body}"
        );
    }
    // Types serde refuses are 422 too; malformed JSON is 400.
    let (status, _) = app
        .post(
            &path("/products"),
            Some(t),
            with(product("A", &[1]), "status", json!("sold")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .post(&path("/products"), Some(t), json!({ "name": "A" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .client
        .post(app.url(&path("/products")))
        .bearer_auth(t)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Conflicts: a SKU in use, twice the same SKU, a slug in use.
    let mut body = product("B", &[100]);
    body["variants"][0]["sku"] = json!(existing_sku);
    let (status, problem_body) = app.post(&path("/products"), Some(t), body).await;
    assert_eq!(
        (status, problem(&problem_body).0),
        (StatusCode::CONFLICT, "sku_taken")
    );
    let mut body = product("B", &[100, 200]);
    body["variants"][1]["sku"] = body["variants"][0]["sku"].clone();
    let (status, problem_body) = app.post(&path("/products"), Some(t), body).await;
    assert_eq!(
        (status, problem(&problem_body).0),
        (StatusCode::CONFLICT, "sku_taken")
    );
    let (status, problem_body) = app
        .post(&path("/products"), Some(t), product("Existing", &[100]))
        .await;
    assert_eq!(
        (status, problem(&problem_body).0),
        (StatusCode::CONFLICT, "slug_taken")
    );
    let (status, problem_body) = app
        .post(
            &path(&format!("/products/{}/variants", id(&existing))),
            Some(t),
            json!({ "sku": existing_sku, "name": "Again", "price": eur(1) }),
        )
        .await;
    assert_eq!(
        (status, problem(&problem_body).0),
        (StatusCode::CONFLICT, "sku_taken")
    );

    // Nothing of the refused requests was written.
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM variants)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(counts, (1, 1));
}

async fn product_price(app: &TestApp, product_id: i64) -> (Option<i64>, Option<String>) {
    sqlx::query_as("SELECT price_minor, currency::text FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_price_follows_the_cheapest_active_variant() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    let made = created(&app, t, "/products", product("Lamp", &[1000])).await;
    let (product_id, first) = (id(&made), first_variant(&made));
    assert_eq!(
        product_price(&app, product_id).await,
        (Some(1000), Some("EUR".into()))
    );

    let (status, added) = app
        .post(&path(&format!("/products/{product_id}/variants")), Some(t), json!({ "sku": "LAMP-S", "name": "Small", "price": eur(500), "attributes": { "size": "S" } }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        (added["product_id"].as_i64(), added["available"].as_i64()),
        (Some(product_id), Some(0))
    );
    let second = id(&added);
    assert_eq!(product_price(&app, product_id).await.0, Some(500));

    let (status, changed) = patch(
        &app,
        t,
        &format!("/variants/{second}"),
        json!({ "price": eur(1500), "name": "Small lamp" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (changed["price"].clone(), changed["name"].as_str()),
        (eur(1500), Some("Small lamp"))
    );
    assert_eq!(product_price(&app, product_id).await.0, Some(1000));

    let (status, _) = patch(
        &app,
        t,
        &format!("/variants/{first}"),
        json!({ "active": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(product_price(&app, product_id).await.0, Some(1500));
    let (_, page) = get(&app, &format!("/products/{product_id}")).await;
    assert_eq!(
        page["variants"].as_array().unwrap().len(),
        1,
        "inactive variants are hidden"
    );
    assert_eq!(page["price"], eur(1500));
    let (_, list) = get(&app, "/products").await;
    assert_eq!(list["items"][0]["price"], eur(1500));

    // No active variant: no price, not listed, the page says so.
    let (status, _) = patch(
        &app,
        t,
        &format!("/variants/{second}"),
        json!({ "active": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(product_price(&app, product_id).await, (None, None));
    assert!(ids(&get(&app, "/products").await.1).is_empty());
    let (_, page) = get(&app, &format!("/products/{product_id}")).await;
    assert_eq!(
        (page["price"].clone(), page["variants"].clone()),
        (Value::Null, json!([]))
    );
    let (status, _) = patch(
        &app,
        t,
        &format!("/variants/{first}"),
        json!({ "active": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(product_price(&app, product_id).await.0, Some(1000));

    // Prices are in the shop's currency and not negative; unknown ids are 404.
    let (status, body) = patch(
        &app,
        t,
        &format!("/variants/{first}"),
        json!({ "price": { "amount_minor": 900, "currency": "USD" } }),
    )
    .await;
    assert_eq!(
        (status, problem(&body).1),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["/price/currency"])
    );
    let (status, body) = patch(
        &app,
        t,
        &format!("/variants/{first}"),
        json!({ "price": eur(-5) }),
    )
    .await;
    assert_eq!(
        (status, problem(&body).1),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["/price/amount_minor"]
        )
    );
    let (status, body) = app.post(&path(&format!("/products/{product_id}/variants")), Some(t), json!({ "sku": "LAMP-X", "name": "X", "price": { "amount_minor": 1, "currency": "GBP" } })).await;
    assert_eq!(
        (status, problem(&body).1),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["/price/currency"])
    );
    assert_eq!(
        patch(&app, t, "/variants/999999", json!({ "active": true }))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app
        .post(
            &path("/products/999999/variants"),
            Some(t),
            json!({ "sku": "NOPE-1", "name": "X", "price": eur(1) }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(product_price(&app, product_id).await.0, Some(1000));
}

/// A small catalog for list tests: Clothing > Men > Shirts and Home, two brands, two tags.
struct Shop {
    shirt_cheap: i64,
    shirt_dear: i64,
    jacket: i64,
    mug: i64,
    sold_out: i64,
}

async fn shop(app: &TestApp, t: &str) -> Shop {
    let clothing = id(&created(app, t, "/categories", json!({ "name": "Clothing" })).await);
    let men = id(&created(
        app,
        t,
        "/categories",
        json!({ "name": "Men", "parent_id": clothing }),
    )
    .await);
    let shirts = id(&created(
        app,
        t,
        "/categories",
        json!({ "name": "Shirts", "parent_id": men }),
    )
    .await);
    let home = id(&created(app, t, "/categories", json!({ "name": "Home" })).await);
    let north = id(&created(app, t, "/brands", json!({ "name": "Northwind" })).await);
    let south = id(&created(app, t, "/brands", json!({ "name": "Southwind" })).await);
    created(app, t, "/tags", json!({ "name": "Sale" })).await;
    created(app, t, "/tags", json!({ "name": "Organic" })).await;
    let make = |name: &'static str, price: i64, category: i64, brand: i64, tags: Value| {
        let body = with(
            with(
                with(product(name, &[price]), "category_id", json!(category)),
                "brand_id",
                json!(brand),
            ),
            "tags",
            tags,
        );
        async move { created(app, t, "/products", body).await }
    };
    let shirt_cheap = make("Cheap Shirt", 1500, shirts, north, json!(["sale"])).await;
    let shirt_dear = make("Dear Shirt", 9000, shirts, south, json!(["organic"])).await;
    let jacket = make("Jacket", 20000, men, north, json!(["sale", "organic"])).await;
    let mug = make("Mug", 800, home, north, json!([])).await;
    let sold_out = make("Sold Out Shirt", 2500, shirts, north, json!([])).await;
    for p in [&shirt_cheap, &shirt_dear, &jacket, &mug] {
        stock(app, first_variant(p), 5, 0).await;
    }
    // Every unit of this one is reserved.
    stock(app, first_variant(&sold_out), 3, 3).await;
    Shop {
        shirt_cheap: id(&shirt_cheap),
        shirt_dear: id(&shirt_dear),
        jacket: id(&jacket),
        mug: id(&mug),
        sold_out: id(&sold_out),
    }
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let s = shop(&app, &staff.token).await;
    let list = |q: &'static str| {
        let app = &app;
        async move {
            let (status, body) = get(app, &format!("/products?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            sorted(ids(&body))
        }
    };
    let all = sorted(vec![
        s.shirt_cheap,
        s.shirt_dear,
        s.jacket,
        s.mug,
        s.sold_out,
    ]);
    assert_eq!(list("").await, all);
    assert_eq!(
        list("category=clothing").await,
        sorted(vec![s.shirt_cheap, s.shirt_dear, s.jacket, s.sold_out]),
        "the whole subtree"
    );
    assert_eq!(
        list("category=men").await,
        sorted(vec![s.shirt_cheap, s.shirt_dear, s.jacket, s.sold_out])
    );
    assert_eq!(
        list("category=shirts").await,
        sorted(vec![s.shirt_cheap, s.shirt_dear, s.sold_out])
    );
    assert_eq!(list("category=home").await, [s.mug]);
    assert_eq!(list("category=nowhere").await, Vec::<i64>::new());
    assert_eq!(list("brand=southwind").await, [s.shirt_dear]);
    assert_eq!(
        list("brand=northwind&category=clothing").await,
        sorted(vec![s.shirt_cheap, s.jacket, s.sold_out])
    );
    assert_eq!(
        list("tag=sale").await,
        sorted(vec![s.shirt_cheap, s.jacket])
    );
    assert_eq!(list("tag=organic&brand=northwind").await, [s.jacket]);
    assert_eq!(
        list("min_price=1500&max_price=9000").await,
        sorted(vec![s.shirt_cheap, s.shirt_dear, s.sold_out])
    );
    assert_eq!(list("min_price=10000").await, [s.jacket]);
    assert_eq!(list("max_price=800").await, [s.mug]);
    assert_eq!(
        list("in_stock=true").await,
        sorted(vec![s.shirt_cheap, s.shirt_dear, s.jacket, s.mug])
    );
    assert_eq!(list("in_stock=false").await, [s.sold_out]);
    assert_eq!(
        list("in_stock=true&category=shirts&max_price=5000").await,
        [s.shirt_cheap]
    );

    // The summary: brand, category, price, tags, availability.
    let (_, page) = get(&app, "/products?category=shirts&sort=price_asc").await;
    let first = &page["items"][0];
    assert_eq!(first["name"], "Cheap Shirt");
    assert_eq!(first["brand"]["slug"], "northwind");
    assert_eq!(first["category"]["slug"], "shirts");
    assert_eq!(first["price"], eur(1500));
    assert_eq!(first["tags"][0]["slug"], "sale");
    assert_eq!(first["in_stock"], true);
    assert_eq!(
        page["items"][1]["in_stock"], false,
        "sold out: all reserved"
    );
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_and_search_parameters() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "/products?sort=cheapest",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/products?limit=abc",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/products?in_stock=maybe",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/products?cursor=not-a-cursor",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/products?cursor=eyJ4IjoxfQ",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/products?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/products?limit=101",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/products?min_price=-1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/products?min_price=500&max_price=100",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/products?category=Not%20A%20Slug",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/products?brand=%00",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        ("/search", StatusCode::BAD_REQUEST, "invalid_query"),
        (
            "/search?q=",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/search?q=%20%20",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/search?q=a%00b",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/search?q=shirt&limit=500",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "/search?q=shirt&cursor=xyz",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
    ];
    for (p, status, code) in cases {
        let (got, body) = get(&app, p).await;
        assert_eq!((got, problem(&body).0), (status, code), "{p}: {body}");
    }
    let (status, body) = get(&app, &format!("/search?q={}", "a".repeat(201))).await;
    assert_eq!(
        (status, problem(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            ("validation_failed", vec!["q"])
        )
    );
    let (status, _) = get(&app, &format!("/search?q={}", "a".repeat(200))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get(&app, "/products?limit=0").await;
    assert_eq!(problem(&body).1, ["limit"]);

    // A cursor only works with the ordering that made it.
    let staff = app.staff().await;
    for i in 0..3 {
        created(
            &app,
            &staff.token,
            "/products",
            product(&format!("P{i}"), &[100 * (i + 1)]),
        )
        .await;
    }
    let (_, page) = get(&app, "/products?sort=price_asc&limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, body) = get(&app, &format!("/products?sort=name&cursor={cursor}")).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    let (status, body) = get(&app, &format!("/search?q=p0&cursor={cursor}")).await;
    assert_eq!(
        (status, problem(&body).0),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    assert_eq!(
        get(&app, &format!("/products?sort=price_asc&cursor={cursor}"))
            .await
            .0,
        StatusCode::OK
    );
}

/// Every page of a list, following next_cursor.
async fn all_pages(app: &TestApp, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let after = cursor
            .as_deref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (status, page) = get(app, &format!("/products?{query}&limit=4{after}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= 4);
        items.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page_items.len(), 4, "only full pages have a next page");
                cursor = Some(next.to_owned());
            }
            None => return items,
        }
    }
    panic!("pagination does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pagination_visits_every_product_once_in_order() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let mut all = Vec::new();
    // Equal prices, equal names and equal creation times, so ties are broken by id.
    for i in 0..22 {
        let name = ["Anchor", "Bottle", "Compass"][i % 3];
        let made = created(
            &app,
            &staff.token,
            "/products",
            with(
                product(name, &[[700, 300, 300, 900][i % 4]]),
                "slug",
                json!(format!("p-{i}")),
            ),
        )
        .await;
        all.push(id(&made));
    }
    sqlx::query("UPDATE products SET created_at = '2025-05-01T00:00:00Z' WHERE id % 2 = 0")
        .execute(&app.pool)
        .await
        .unwrap();
    let expected = sorted(all.clone());

    for sort in ["newest", "price_asc", "price_desc", "name"] {
        let items = all_pages(&app, &format!("sort={sort}")).await;
        let seen: Vec<i64> = items.iter().map(id).collect();
        assert_eq!(
            sorted(seen.clone()),
            expected,
            "{sort}: each product exactly once"
        );
        let keys: Vec<(i64, String, i64)> = items
            .iter()
            .map(|p| {
                (
                    p["price"]["amount_minor"].as_i64().unwrap(),
                    p["name"].as_str().unwrap().to_owned(),
                    id(p),
                )
            })
            .collect();
        for pair in keys.windows(2) {
            let ((pa, na, ia), (pb, nb, ib)) = (&pair[0], &pair[1]);
            let ordered = match sort {
                "price_asc" => (pa, ia) < (pb, ib),
                "price_desc" => (pa, ia) > (pb, ib),
                "name" => (na, ia) < (nb, ib),
                _ => true,
            };
            assert!(ordered, "{sort}: {:?} before {:?}", pair[0], pair[1]);
        }
    }
    // Newest: by created_at, then id, descending.
    let created_at: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, created_at::text FROM products ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let newest: Vec<i64> = all_pages(&app, "sort=newest")
        .await
        .iter()
        .map(id)
        .collect();
    assert_eq!(
        newest,
        created_at.iter().map(|(id, _)| *id).collect::<Vec<_>>()
    );

    // Stable under inserts: a product added between pages neither repeats nor hides others.
    let (_, first) = get(&app, "/products?sort=price_asc&limit=5").await;
    created(&app, &staff.token, "/products", product("Cheapest", &[1])).await;
    let mut seen = ids(&first);
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let (_, page) = get(
            &app,
            &format!("/products?sort=price_asc&limit=5&cursor={cursor}"),
        )
        .await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(sorted(seen), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_detail_shows_variants_with_availability() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    let kitchen = id(&created(&app, t, "/categories", json!({ "name": "Kitchen" })).await);
    let knives = id(&created(
        &app,
        t,
        "/categories",
        json!({ "name": "Knives", "parent_id": kitchen }),
    )
    .await);
    let made = created(
        &app,
        t,
        "/products",
        with(
            product("Chef Knife", &[8900, 12900]),
            "category_id",
            json!(knives),
        ),
    )
    .await;
    let (small, large) = (
        first_variant(&made),
        made["variants"][1]["id"].as_i64().unwrap(),
    );
    stock(&app, small, 10, 4).await;
    stock(&app, small, 3, 0).await;
    stock(&app, large, 2, 2).await;

    let (status, page) = get(&app, &format!("/products/{}", id(&made))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["category"]["path"],
        json!([
            { "id": kitchen, "slug": "kitchen", "name": "Kitchen" },
            { "id": knives, "slug": "knives", "name": "Knives" },
        ])
    );
    let variants = page["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    assert_eq!(
        (
            variants[0]["id"].as_i64(),
            variants[0]["available"].as_i64(),
            variants[0]["in_stock"].as_bool()
        ),
        (Some(small), Some(9), Some(true))
    );
    assert_eq!(
        (
            variants[1]["id"].as_i64(),
            variants[1]["available"].as_i64(),
            variants[1]["in_stock"].as_bool()
        ),
        (Some(large), Some(0), Some(false))
    );
    assert_eq!(variants[1]["price"], eur(12900));
    assert_eq!(page["in_stock"], true);
    assert_eq!(page["brand"], Value::Null);
    assert_eq!(page["tags"], json!([]));
    assert!(page["created_at"].as_str().unwrap().starts_with("20"));

    // The harness's products (made without the API) show too.
    let fixture = app.stocked_product(450, 7).await;
    let (status, page) = get(&app, &format!("/products/{}", fixture.product_id)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (
            page["variants"][0]["available"].as_i64(),
            page["price"].clone()
        ),
        (Some(7), eur(450))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_exact_words_first_and_tolerates_typos() {
    let app = TestApp::spawn().await;
    let staff = app.staff().await;
    let t = staff.token.as_str();
    let shared = &app;
    let make = |name: &'static str, description: &'static str| {
        let body = with(product(name, &[5000]), "description", json!(description));
        async move { id(&created(shared, t, "/products", body).await) }
    };
    let jacket = make("Vintage Leather Jacket", "Soft lambskin, lined.").await;
    let tote = make("Canvas Tote", "With leather handles.").await;
    let weather = make("Weather Jacket", "Keeps the rain out.").await;
    let mug = make("Stoneware Mug", "Holds coffee.").await;
    let archived = make("Leather Belt", "Archived soon.").await;
    assert_eq!(
        delete(&app, t, &format!("/products/{archived}")).await.0,
        StatusCode::NO_CONTENT
    );

    let search = |q: &'static str| {
        let app = &app;
        async move {
            let (status, body) = get(app, &format!("/search?q={q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body
        }
    };
    // A word in the name ranks above the same word in the description; archived never shows.
    let page = search("leather").await;
    assert_eq!(ids(&page), [jacket, tote]);
    let scores: Vec<f64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1] && scores[1] >= 1.0, "{scores:?}");
    assert_eq!(page["items"][0]["name"], "Vintage Leather Jacket");
    assert_eq!(page["items"][0]["price"], eur(5000));

    // Typos still find the product, below anything matched as typed.
    let page = search("lether%20jaket").await;
    assert_eq!(ids(&page).first(), Some(&jacket), "{page}");
    assert!(page["items"][0]["score"].as_f64().unwrap() < 1.0);
    assert_eq!(ids(&search("stonware").await), [mug]);
    // Exact matches of one word rank first, then the corrected ones.
    let page = search("jacket").await;
    assert_eq!(sorted(ids(&page)), sorted(vec![jacket, weather]));
    // Nothing like it: no results; stop words only: no results, no error.
    assert!(ids(&search("zzzzqqq").await).is_empty());
    assert!(ids(&search("the").await).is_empty());
    // Websearch syntax: exclusion and phrases.
    assert_eq!(ids(&search("jacket%20-leather").await), [weather]);
    assert_eq!(ids(&search("%22leather%20handles%22").await), [tote]);

    // Pages of one: every hit once, in score order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(
            &app,
            &format!("/search?q=leather%20jacket%20lether&limit=1{cursor}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let (_, all) = get(&app, "/search?q=leather%20jacket%20lether&limit=100").await;
    assert_eq!(seen, ids(&all));
    assert!(seen.contains(&jacket) && !seen.contains(&archived));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_creates_a_consistent_catalog_and_runs_twice() {
    let app = TestApp::spawn().await;
    let summary = shop::seed::run(&app.state.db, &app.state.config, 300, Some("demo password"))
        .await
        .unwrap();
    assert!(summary.contains("300 products"), "{summary}");
    let count = |sql: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM products WHERE status = 'active'").await,
        300
    );
    assert!((25..=40).contains(&count("SELECT count(*) FROM categories").await));
    assert!(count("SELECT count(*) FROM brands").await >= 20);
    assert!(count("SELECT count(*) FROM tags").await >= 25);
    assert_eq!(count("SELECT count(*) FROM warehouses").await, 2);
    let variants = count("SELECT count(*) FROM variants").await;
    assert!((300..=1200).contains(&variants), "{variants}");
    // The ledger sums to every stock level, and no movement lacks its stock row.
    assert_eq!(
        count(
            "SELECT count(*) FROM stock s
             LEFT JOIN LATERAL (SELECT sum(m.on_hand_delta) AS on_hand, sum(m.reserved_delta) AS reserved
                                FROM inventory_movements m
                                WHERE m.variant_id = s.variant_id AND m.warehouse_id = s.warehouse_id) l ON true
             WHERE (s.on_hand, s.reserved) IS DISTINCT FROM (l.on_hand, l.reserved)"
        )
        .await,
        0
    );
    assert!(count("SELECT count(*) FROM inventory_movements WHERE kind = 'restock'").await > 0);
    // Mostly in stock, some sold out.
    let in_stock = count("SELECT count(*) FROM variants v WHERE EXISTS (SELECT 1 FROM stock s WHERE s.variant_id = v.id AND s.on_hand > 0)").await;
    assert!(
        in_stock > variants * 3 / 4 && in_stock < variants,
        "{in_stock} of {variants}"
    );
    // Product prices are their cheapest variant's, within 5.00 and 500.00 EUR.
    assert_eq!(
        count("SELECT count(*) FROM products p WHERE p.price_minor IS DISTINCT FROM (SELECT min(v.price_minor) FROM variants v WHERE v.product_id = p.id) OR p.currency <> 'EUR'").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM variants WHERE price_minor NOT BETWEEN 500 AND 50000").await,
        0
    );
    // Three levels of categories; every product in a leaf.
    assert_eq!(
        count("SELECT max(array_length(path, 1))::bigint FROM categories").await,
        3
    );
    assert_eq!(count("SELECT count(*) FROM products p JOIN categories c ON c.id = p.category_id WHERE array_length(c.path, 1) <> 3").await, 0);
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT email, role FROM users ORDER BY email")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        roles,
        [
            ("customer@shop.local".into(), "customer".into()),
            ("staff@shop.local".into(), "staff".into())
        ]
    );

    // The demo data is usable through the API.
    let (status, page) = get(&app, "/products?category=clothing&limit=5").await;
    assert_eq!((status, ids(&page).len()), (StatusCode::OK, 5));
    let (_, hits) = get(&app, "/search?q=lether%20jaket").await;
    assert!(
        hits["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["name"].as_str().unwrap().contains("Leather")),
        "{hits}"
    );

    // A second run changes nothing and says so.
    let movements = count("SELECT count(*) FROM inventory_movements").await;
    let again = shop::seed::run(&app.state.db, &app.state.config, 300, Some("demo password"))
        .await
        .unwrap();
    assert!(again.contains("left alone"), "{again}");
    assert_eq!(count("SELECT count(*) FROM products").await, 300);
    assert_eq!(
        count("SELECT count(*) FROM inventory_movements").await,
        movements
    );
    assert_eq!(count("SELECT count(*) FROM users").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_deterministic() {
    let (a, b) = (TestApp::spawn().await, TestApp::spawn().await);
    for app in [&a, &b] {
        shop::seed::run(&app.state.db, &app.state.config, 50, None)
            .await
            .unwrap();
    }
    let catalog = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            let rows: Vec<(String, i64, String)> = sqlx::query_as(
                "SELECT p.slug, p.price_minor, string_agg(v.sku || ':' || COALESCE((SELECT sum(on_hand) FROM stock s WHERE s.variant_id = v.id), 0), ',' ORDER BY v.sku)
                 FROM products p JOIN variants v ON v.product_id = p.id GROUP BY p.id ORDER BY p.slug",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            rows
        }
    };
    let (one, two) = (catalog(&a).await, catalog(&b).await);
    assert_eq!(one.len(), 50);
    assert_eq!(one, two);
    let distinct: HashSet<_> = one.iter().map(|(slug, ..)| slug).collect();
    assert_eq!(distinct.len(), 50);
}
