//! Demo data for `app seed`: a category tree, brands, tags, products with variants, two
//! warehouses with stock (through the ledger), and a staff and a customer account.
//!
//! Deterministic (a seeded generator) and safe to run again: when products already exist
//! the catalog is left alone, and existing accounts are never changed.

mod data;
mod generate;
mod load;

use std::time::Instant;

use anyhow::Context;

use crate::{auth::password, config::Config, db::Db};

pub const STAFF_EMAIL: &str = "staff@shop.local";
pub const CUSTOMER_EMAIL: &str = "customer@shop.local";
const DEFAULT_PASSWORD: &str = "shop-demo-password";
/// Serializes concurrent seed runs (pg_advisory_xact_lock key).
const LOCK_KEY: i64 = 0x5eed;

/// Seeds the database and returns a one-line summary.
pub async fn run(db: &Db, config: &Config, products: u32) -> anyhow::Result<String> {
    let started = Instant::now();
    let password =
        std::env::var("APP_SEED_PASSWORD").unwrap_or_else(|_| DEFAULT_PASSWORD.to_owned());
    // Hashing is slow on purpose; do it before holding any lock.
    let staff_hash = password::hash(&config.auth.argon2, password.clone()).await?;
    let customer_hash = password::hash(&config.auth.argon2, password).await?;

    let mut tx = db
        .write
        .begin()
        .await
        .context("connecting to the database")?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let existing = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM products"#)
        .fetch_one(&mut *tx)
        .await?;

    let catalog = if existing > 0 {
        format!("catalog left alone: {existing} products already exist")
    } else {
        let plan = generate::plan(products);
        let loaded = load::catalog(&mut tx, &plan, config.shop.currency).await?;
        format!(
            "seeded {} products ({} variants, {} stock rows in {} warehouses), {} categories, {} brands, {} tags",
            loaded.products,
            loaded.variants,
            loaded.stock_rows,
            data::WAREHOUSES.len(),
            plan.categories.len(),
            plan.brands.len(),
            data::TAGS.len(),
        )
    };

    let mut created = Vec::new();
    for (email, name, role, hash) in [
        (STAFF_EMAIL, "Demo Staff", "staff", staff_hash),
        (CUSTOMER_EMAIL, "Demo Customer", "customer", customer_hash),
    ] {
        let inserted = sqlx::query!(
            "INSERT INTO users (id, email, password_hash, full_name, role) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (lower(email)) DO NOTHING",
            uuid::Uuid::now_v7(),
            email,
            hash,
            name,
            role,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            created.push(email);
        }
    }
    tx.commit().await?;

    let accounts = if created.is_empty() {
        "accounts already exist".to_owned()
    } else {
        format!("created {}", created.join(" and "))
    };
    Ok(format!(
        "{catalog}; {accounts}; in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}
