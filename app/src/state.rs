//! What every handler can reach.

use std::sync::Arc;

use crate::{
    auth::token::JwtKeys, catalog::cache::CatalogCache, config::Config, db::Db,
    payments::gateway::PaymentGateway,
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub catalog_cache: CatalogCache,
}

impl AppState {
    pub fn new(config: Config, db: Db) -> Self {
        let jwt = Arc::new(JwtKeys::new(&config.auth));
        let catalog_cache = CatalogCache::new(&config.catalog);
        Self {
            catalog_cache,
            db,
            config: Arc::new(config),
            jwt,
            gateway: Arc::new(crate::payments::gateway::TestGateway),
        }
    }
}
