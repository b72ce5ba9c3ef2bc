//! The load of the order-event benchmark (tests/bench-events.sh): shoppers place and pay
//! orders through the API at a fixed rate; afterwards it reports, for every order event of
//! the run, the time from the event's commit until all four consumers had applied it.
//!
//! Configured like `app` (the APP_* variables, for the database and the token secret) plus
//! BENCH_BASE (the API's URL), BENCH_RATE (orders per second), BENCH_SECONDS,
//! BENCH_SHOPPERS and BENCH_VARIANT (a variant with plenty of stock).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shop::{auth::Role, config::Config};
use sqlx::PgPool;
use uuid::Uuid;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Shopper {
    token: String,
    card: Value,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = std::env::var("BENCH_BASE").context("BENCH_BASE is not set")?;
    let rate: u64 = var("BENCH_RATE", 200);
    let seconds: u64 = var("BENCH_SECONDS", 20);
    let shoppers: usize = var("BENCH_SHOPPERS", 400);
    let variant: i64 = std::env::var("BENCH_VARIANT")
        .context("BENCH_VARIANT is not set")?
        .parse()?;
    let config = Config::load()?;
    let pool = PgPool::connect(secrecy::ExposeSecret::expose_secret(&config.database.url)).await?;
    let jwt = shop::auth::token::JwtKeys::new(&config.auth);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?;

    // Shoppers with a default address and a stored card.
    let mut ready = Vec::with_capacity(shoppers);
    for n in 0..shoppers {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, full_name) VALUES ($1, $2, 'not-a-hash', 'Bench')",
        )
        .bind(id)
        .bind(format!("load-{n}-{id}@example.com"))
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO addresses (id, user_id, recipient, line1, city, postal_code, country, is_default_shipping, is_default_billing)
             VALUES ($1, $2, 'Bench', '1 Load Street', 'Testville', '10115', 'DE', true, true)",
        )
        .bind(Uuid::now_v7())
        .bind(id)
        .execute(&pool)
        .await?;
        let token = jwt.issue(id, Role::Customer);
        let card = json!({ "card": { "number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123" } });
        let method: Value = http
            .post(format!("{base}/api/v1/payment-methods"))
            .bearer_auth(&token)
            .json(&card)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ready.push(Shopper {
            token,
            card: method["id"].clone(),
        });
    }
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::channel(shoppers);
    for shopper in ready {
        idle_tx.send(Arc::new(shopper)).await?;
    }

    let started_at: time::OffsetDateTime = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await?;
    let placed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut skipped = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for _ in 0..rate * seconds {
        ticks.tick().await;
        let Ok(shopper) = idle_rx.try_recv() else {
            // Every shopper is still busy with an order: the API is behind the rate.
            skipped += 1;
            continue;
        };
        let (http, base, idle, placed, failed) = (
            http.clone(),
            base.clone(),
            idle_tx.clone(),
            placed.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            match order(&http, &base, &shopper, variant).await {
                Ok(()) => placed.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    eprintln!("order failed: {error:#}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            let _ = idle.send(shopper).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = began.elapsed().as_secs_f64();
    let placed = placed.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);

    // Wait for every consumer to apply every event of the run.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM order_events e
               CROSS JOIN (VALUES ('inventory'), ('notifications'), ('fulfilment'), ('analytics')) c(name)
              WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = c.name AND p.event_id = e.id)",
        )
        .fetch_one(&pool)
        .await?;
        if missing == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{missing} consumer applications still missing 120 s after the load ended");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (events, p50, p95, p99, max): (i64, f64, f64, f64, f64) = sqlx::query_as(
        "WITH done AS (
             SELECT (extract(epoch FROM max(p.processed_at) - e.created_at) * 1000)::float8 AS ms
             FROM order_events e JOIN processed_events p ON p.event_id = e.id
             WHERE e.created_at >= $1 GROUP BY e.id, e.created_at)
         SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms)
         FROM done",
    )
    .bind(started_at)
    .fetch_one(&pool)
    .await?;
    let (relay_p50, relay_p99): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT (extract(epoch FROM published_at - created_at) * 1000)::float8 AS ms
               FROM order_events WHERE created_at >= $1) published",
    )
    .bind(started_at)
    .fetch_one(&pool)
    .await?;
    println!(
        "orders: {placed} placed and paid in {elapsed:.1} s ({:.0}/s, target {rate}/s), {failed} failed, {skipped} skipped (all shoppers busy)",
        placed as f64 / elapsed
    );
    println!(
        "events: {events} (created + paid), committed -> all 4 consumers done: p50 {p50:.0} ms, p95 {p95:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"
    );
    println!(
        "  of which committed -> published (relay): p50 {relay_p50:.0} ms, p99 {relay_p99:.0} ms"
    );
    if failed > 0 {
        bail!("{failed} orders failed");
    }
    Ok(())
}

/// One order: a line into the cart, checkout, payment with the stored card.
async fn order(
    http: &reqwest::Client,
    base: &str,
    shopper: &Shopper,
    variant: i64,
) -> anyhow::Result<()> {
    let post = |path: &str, body: Value| {
        http.post(format!("{base}/api/v1{path}"))
            .bearer_auth(&shopper.token)
            .json(&body)
            .send()
    };
    post(
        "/cart/lines",
        json!({ "variant_id": variant, "quantity": 1 }),
    )
    .await?
    .error_for_status()?;
    let order: Value = post("/checkout", json!({}))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = order["id"].as_str().context("checkout answered no id")?;
    post(
        &format!("/orders/{id}/pay"),
        json!({ "payment_method_id": shopper.card }),
    )
    .await?
    .error_for_status()?;
    Ok(())
}
