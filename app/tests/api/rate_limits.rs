//! Rate limits in Redis: login per account and per address, API requests per client; the
//! headers; `X-Forwarded-For` believed only from trusted proxies.

use reqwest::{header::HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::{
    harness::{TestApp, PASSWORD},
    redis::RedisServer,
};

/// Status, the three `RateLimit-*` headers and `Retry-After` (as numbers), and the body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, [Option<u64>; 4], Value) {
    let response = request.send().await.unwrap();
    let number = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap())
    };
    let headers = response.headers().clone();
    let figures = [
        number(&headers, "ratelimit-limit"),
        number(&headers, "ratelimit-remaining"),
        number(&headers, "ratelimit-reset"),
        number(&headers, "retry-after"),
    ];
    let status = response.status();
    (
        status,
        figures,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn login(app: &TestApp, email: &str, password: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_account() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| redis.configure(c)).await;
    let user = app.customer().await;
    // 5 a minute: one every 12 s, in bursts of up to 5.
    for left in (0..5).rev() {
        let (status, [limit, remaining, reset, retry], _) =
            send(login(&app, &user.email, "wrong password!")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!((limit, remaining, retry), (Some(5), Some(left), None));
        assert_eq!(
            reset,
            Some(12 * (5 - left)),
            "seconds until the budget is whole"
        );
    }
    // The right password no longer helps, in any letter case.
    let (status, [limit, remaining, reset, retry], problem) =
        send(login(&app, &user.email.to_uppercase(), PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!((limit, remaining, reset), (Some(5), Some(0), Some(60)));
    let retry = retry.unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    // Another account from the same address is not affected.
    let other = app.customer().await;
    let (status, [_, remaining, ..], _) = send(login(&app, &other.email, PASSWORD)).await;
    assert_eq!((status, remaining), (StatusCode::OK, Some(4)));

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("rate_limited_total{limit=\"login_account\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_address_behind_trusted_proxies_only() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| {
        redis.configure(c);
        c.redis.rate_limit.login_ip.requests = 3;
    })
    .await;
    // From an untrusted peer, X-Forwarded-For is ignored: every attempt is 127.0.0.1's.
    for (i, status) in [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .enumerate()
    {
        let request = login(&app, &format!("nobody{i}@example.com"), "whatever-password")
            .header("x-forwarded-for", format!("203.0.113.{i}"));
        let (got, [limit, ..], _) = send(request).await;
        assert_eq!((got, limit), (status, Some(3)), "attempt {i}");
    }

    // Behind a trusted proxy, each forwarded address has a budget of its own.
    let proxied = TestApp::spawn_with(|c| {
        redis.configure(c);
        c.redis.key_prefix = "proxied:".into();
        c.redis.rate_limit.login_ip.requests = 3;
        c.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for i in 0..4 {
        let request = login(
            &proxied,
            &format!("someone{i}@example.com"),
            "whatever-password",
        )
        .header("x-forwarded-for", format!("198.51.100.9, 203.0.113.{i}"));
        let (status, [_, remaining, ..], _) = send(request).await;
        assert_eq!(
            (status, remaining),
            (StatusCode::UNAUTHORIZED, Some(2)),
            "client {i}"
        );
    }
    // ...and one address over its budget is refused.
    for expected in [2, 1, 0] {
        let request = login(&proxied, "x@example.com", "whatever-password")
            .header("x-forwarded-for", "192.0.2.50");
        let (_, [_, remaining, ..], _) = send(request).await;
        // The account limit (5) is looser than the address limit here.
        assert_eq!(remaining, Some(expected));
    }
    let request = login(&proxied, "y@example.com", "whatever-password")
        .header("x-forwarded-for", "192.0.2.50");
    assert_eq!(send(request).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_are_limited_per_client() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| {
        redis.configure(c);
        c.redis.rate_limit.api.requests = 4;
        c.redis.rate_limit.api.per_s = 2;
    })
    .await;
    // Anonymous: the address's budget, on every route under /api/v1.
    for left in (0..4).rev() {
        let (status, [limit, remaining, reset, _], _) =
            send(app.client.get(app.url("/api/v1/categories"))).await;
        assert_eq!(
            (status, limit, remaining),
            (StatusCode::OK, Some(4), Some(left))
        );
        let used = 4 - left;
        assert_eq!(
            reset,
            Some(used.div_ceil(2)),
            "0.5 s per request, rounded up"
        );
    }
    let (status, [limit, remaining, _, retry], problem) =
        send(app.client.get(app.url("/api/v1/products"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!((limit, remaining, retry), (Some(4), Some(0), Some(1)));

    // A signed-in user has a budget of their own.
    let user = app.customer().await;
    let (status, [_, remaining, ..], _) = send(
        app.client
            .get(app.url("/api/v1/users/me"))
            .bearer_auth(&user.token),
    )
    .await;
    assert_eq!((status, remaining), (StatusCode::OK, Some(3)));

    // The budget refills: one request every 0.5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if send(app.client.get(app.url("/api/v1/categories"))).await.0 == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never refilled"
        );
    }
    // Operational endpoints are not limited.
    let (status, [limit, ..], _) = send(app.client.get(app.url("/readyz"))).await;
    assert_eq!((status, limit), (StatusCode::OK, None));
}
