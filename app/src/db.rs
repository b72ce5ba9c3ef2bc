//! Connection pools: writes go to the primary; catalog reads may go to replicas.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone, Debug)]
pub struct Db {
    /// The primary: every write and every read that must see its own writes.
    pub write: PgPool,
    /// Replicas (or the primary again): catalog reads that may lag a little.
    pub read: PgPool,
    /// No `read_url` was given: `read` is the primary's pool.
    pub read_is_primary: bool,
}

impl Db {
    /// Builds the pools without connecting, so the app starts (and reports not ready)
    /// while the database is still coming up.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        let write = pool(config, config.url.expose_secret(), false)?;
        let read = match &config.read_url {
            Some(url) => pool(config, url.expose_secret(), true)?,
            None => write.clone(),
        };
        Ok(Self {
            write,
            read,
            read_is_primary: config.read_url.is_none(),
        })
    }

    /// Same pools for both roles (tests, tools).
    pub fn single(pool: PgPool) -> Self {
        Self {
            write: pool.clone(),
            read: pool,
            read_is_primary: true,
        }
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.write).await
    }
}

fn pool(config: &DatabaseConfig, url: &str, read_only: bool) -> Result<PgPool, sqlx::Error> {
    let statement_timeout = config.statement_timeout_ms.to_string();
    let mut options: PgConnectOptions = url.parse()?;
    options = options
        .application_name("shop")
        .options([("statement_timeout", statement_timeout.as_str())]);
    if read_only {
        options = options.options([("default_transaction_read_only", "on")]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        // A connection to a demoted primary must not live on after a failover.
        .max_lifetime(Duration::from_secs(300))
        // HAProxy cuts the sessions of a server it marks down: a pooled session it cut is
        // found dead here (one round trip) and replaced, instead of failing a request.
        .test_before_acquire(true)
        .connect_lazy_with(options))
}
