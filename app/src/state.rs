//! What every handler can reach.

use std::sync::Arc;

use crate::{auth::token::JwtKeys, config::Config, db::Db, payments::gateway::PaymentGateway};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub gateway: Arc<dyn PaymentGateway>,
}

impl AppState {
    pub fn new(config: Config, db: Db) -> Self {
        let jwt = Arc::new(JwtKeys::new(&config.auth));
        Self {
            db,
            config: Arc::new(config),
            jwt,
            gateway: Arc::new(crate::payments::gateway::TestGateway),
        }
    }
}
