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
/// Serializes concurrent seed runs (pg_advisory_xact_lock key).
const LOCK_KEY: i64 = 0x5eed;

/// Seeds the database and returns a one-line summary. The demo accounts get `password`, the
/// one the operator chose; with none, no accounts are made (a password written in the
/// source would be known to everyone).
pub async fn run(
    db: &Db,
    config: &Config,
    products: u32,
    password: Option<&str>,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let password = password.filter(|p| !p.is_empty()).map(str::to_owned);
    // Hashing is slow on purpose; do it before holding any lock.
    let hashes = match &password {
        Some(password) => Some((
            password::hash(&config.auth.argon2, password.clone()).await?,
            password::hash(&config.auth.argon2, password.clone()).await?,
        )),
        None => None,
    };

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
    let accounts = match hashes {
        Some((staff_hash, customer_hash)) => vec![
            (STAFF_EMAIL, "Demo Staff", "staff", staff_hash),
            (CUSTOMER_EMAIL, "Demo Customer", "customer", customer_hash),
        ],
        None => Vec::new(),
    };
    for (email, name, role, hash) in accounts {
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

    let accounts = if password.is_none() {
        "no demo accounts (set APP_SEED_PASSWORD to create them)".to_owned()
    } else if created.is_empty() {
        "accounts already exist".to_owned()
    } else {
        format!("created {}", created.join(" and "))
    };
    Ok(format!(
        "{catalog}; {accounts}; in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}
