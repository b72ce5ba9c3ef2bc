//! What every handler can reach.

use std::sync::Arc;

use crate::{
    auth::token::JwtKeys, catalog::cache::CatalogCache, config::Config, db::Db,
    payments::gateway::PaymentGateway, redis::Redis,
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub catalog_cache: CatalogCache,
    /// Shared by every replica; off when `redis.url` is not set.
    pub redis: Redis,
}

impl AppState {
    pub fn new(config: Config, db: Db) -> Self {
        let jwt = Arc::new(JwtKeys::new(&config.auth));
        // The URL was checked with the configuration; a bad one here is a caller's bug.
        let redis = Redis::new(&config.redis).expect("redis.url is checked by Config::check");
        let catalog_cache = CatalogCache::new(&config.catalog, redis.clone());
        Self {
            catalog_cache,
            redis,
            db,
            config: Arc::new(config),
            jwt,
            gateway: Arc::new(crate::payments::gateway::TestGateway),
        }
    }
}
