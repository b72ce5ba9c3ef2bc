//! The authorization matrix: every operation of the API, called with no token, a customer's
//! token and a staff token, must answer as the table below says; and the table must list
//! exactly the operations the OpenAPI document describes, with the security it declares.
//! Ownership (another customer's token) is checked on real resources at the end.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::TestApp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone; a token changes nothing.
    Public,
    /// Anonymous with a cart token, or signed in.
    CartHolder,
    /// Any signed-in user.
    User,
    /// Staff only (declared as the `staff` role of the bearer scheme).
    Staff,
    /// The payment gateway, authenticated by an HMAC signature.
    Signed,
}

use Access::*;

const MATRIX: &[(&str, &str, Access)] = &[
    // auth
    ("POST", "/api/v1/auth/register", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("POST", "/api/v1/auth/logout", User),
    ("POST", "/api/v1/auth/password-reset", Public),
    ("POST", "/api/v1/auth/password-reset/confirm", Public),
    // users
    ("GET", "/api/v1/users/me", User),
    ("PATCH", "/api/v1/users/me", User),
    ("GET", "/api/v1/users/me/addresses", User),
    ("POST", "/api/v1/users/me/addresses", User),
    ("GET", "/api/v1/users/me/addresses/{id}", User),
    ("PATCH", "/api/v1/users/me/addresses/{id}", User),
    ("DELETE", "/api/v1/users/me/addresses/{id}", User),
    // catalog
    ("GET", "/api/v1/categories", Public),
    ("GET", "/api/v1/categories/{category}", Public),
    ("POST", "/api/v1/categories", Staff),
    ("PATCH", "/api/v1/categories/{category}", Staff),
    ("DELETE", "/api/v1/categories/{category}", Staff),
    ("GET", "/api/v1/brands", Public),
    ("POST", "/api/v1/brands", Staff),
    ("PATCH", "/api/v1/brands/{id}", Staff),
    ("DELETE", "/api/v1/brands/{id}", Staff),
    ("GET", "/api/v1/tags", Public),
    ("POST", "/api/v1/tags", Staff),
    ("PATCH", "/api/v1/tags/{id}", Staff),
    ("DELETE", "/api/v1/tags/{id}", Staff),
    ("GET", "/api/v1/products", Public),
    ("POST", "/api/v1/products", Staff),
    ("GET", "/api/v1/products/{id}", Public),
    ("PATCH", "/api/v1/products/{id}", Staff),
    ("DELETE", "/api/v1/products/{id}", Staff),
    ("GET", "/api/v1/products/by-slug/{slug}", Public),
    ("POST", "/api/v1/products/{id}/variants", Staff),
    ("PATCH", "/api/v1/variants/{id}", Staff),
    ("GET", "/api/v1/search", Public),
    // cart
    ("GET", "/api/v1/cart", CartHolder),
    ("DELETE", "/api/v1/cart", CartHolder),
    ("POST", "/api/v1/cart/anonymous", Public),
    ("POST", "/api/v1/cart/lines", CartHolder),
    ("PUT", "/api/v1/cart/lines/{variant_id}", CartHolder),
    ("DELETE", "/api/v1/cart/lines/{variant_id}", CartHolder),
    // orders
    ("POST", "/api/v1/checkout", User),
    ("GET", "/api/v1/orders", User),
    ("GET", "/api/v1/orders/{id}", User),
    ("POST", "/api/v1/orders/{id}/cancel", User),
    ("POST", "/api/v1/orders/{id}/status", Staff),
    // inventory
    ("GET", "/api/v1/inventory/variants/{variant_id}", Staff),
    ("POST", "/api/v1/inventory/restock", Staff),
    ("POST", "/api/v1/inventory/adjust", Staff),
    ("GET", "/api/v1/inventory/low-stock", Staff),
    ("GET", "/api/v1/inventory/movements", Staff),
    ("GET", "/api/v1/warehouses", Staff),
    ("POST", "/api/v1/warehouses", Staff),
    // payments
    ("POST", "/api/v1/payment-methods", User),
    ("GET", "/api/v1/payment-methods", User),
    ("DELETE", "/api/v1/payment-methods/{id}", User),
    ("POST", "/api/v1/orders/{id}/pay", User),
    ("GET", "/api/v1/orders/{id}/payments", User),
    ("POST", "/api/v1/orders/{id}/refund", Staff),
    ("POST", "/api/v1/payments/webhook", Signed),
];

/// The security an operation declares, as an Access (None: not one of our patterns).
fn declared(operation: &Value) -> Option<Access> {
    let Some(requirements) = operation.get("security").and_then(Value::as_array) else {
        return Some(Public);
    };
    let roles: Vec<Vec<String>> = requirements
        .iter()
        .map(|r| match r.get("bearer") {
            Some(scopes) => scopes
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect(),
            None => vec!["<anonymous>".to_owned()],
        })
        .collect();
    match roles.as_slice() {
        [] => Some(Public),
        [only] if only.is_empty() => Some(User),
        [only] if only == &["staff".to_owned()] => Some(Staff),
        [a, b] if a == &["<anonymous>".to_owned()] && b.is_empty() => Some(CartHolder),
        _ => None,
    }
}

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    all
}

#[test]
fn the_matrix_lists_every_operation_with_its_declared_security() {
    let spec = serde_json::to_value(shop::openapi::spec()).unwrap();
    let documented: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let listed: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "operations missing from the matrix"
    );
    assert_eq!(
        listed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "matrix rows for operations that do not exist"
    );
    for (method, path, operation) in operations(&spec) {
        let expected = MATRIX
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .unwrap()
            .2;
        let declared = declared(&operation);
        let expected_declared = if expected == Signed { Public } else { expected };
        assert_eq!(
            declared,
            Some(expected_declared),
            "{method} {path}: declared security differs"
        );
    }
}

/// A concrete path for a templated one: parameters get values of their type that name nothing.
fn concrete(path: &str, operation: &Value) -> String {
    let mut out = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "path" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap();
        let schema = &parameter["schema"];
        let value = match (schema["type"].as_str(), schema["format"].as_str()) {
            (_, Some("uuid")) => "0190f3a0-0000-7000-8000-000000000000".to_owned(),
            (Some("integer"), _) => "987654321".to_owned(),
            _ => "no-such-thing".to_owned(),
        };
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_each_kind_of_caller_as_the_matrix_says() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let staff = app.staff().await;
    let spec = serde_json::to_value(shop::openapi::spec()).unwrap();
    let mut failures = Vec::new();
    for (method, path, operation) in operations(&spec) {
        let access = MATRIX
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|r| r.2)
            .unwrap_or(Public);
        let url = concrete(&path, &operation);
        let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for (who, token) in [
            ("anonymous", None),
            ("customer", Some(customer.token.as_str())),
            ("staff", Some(staff.token.as_str())),
        ] {
            let (status, problem) = app.call(method.clone(), &url, token, body.clone()).await;
            let expected: Option<StatusCode> = match (access, who) {
                (User | Staff | Signed | CartHolder, "anonymous") => Some(StatusCode::UNAUTHORIZED),
                (Staff, "customer") => Some(StatusCode::FORBIDDEN),
                _ => None,
            };
            let ok = match expected {
                Some(want) => status == want,
                // Allowed through: whatever the answer, it is not an authorization failure
                // (except Signed, which ignores bearer tokens and wants a signature).
                None if access == Signed => status == StatusCode::UNAUTHORIZED,
                None => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            };
            if !ok || status.is_server_error() {
                failures.push(format!("{method} {url} as {who}: {status} {problem}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix violations:\n{}",
        failures.join("\n")
    );
}
