//! Payment methods, payments and the gateway webhook.
//!
//! Cards are tokenized at the gateway and only the token is stored (`methods`); an order is
//! paid with a stored card (`pay`) and refunded by staff (`refund`); the gateway reports
//! later outcomes through a signed webhook (`webhook`). Every payment change of an order
//! locks the order row first, so they apply one after another.

mod card;
pub mod gateway;
pub mod idempotency;
pub mod methods;
pub mod model;
pub mod pay;
mod problem;
pub mod refund;
pub(crate) mod repo;
mod settle;
pub mod webhook;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            methods::create_payment_method,
            methods::list_payment_methods
        ))
        .routes(routes!(methods::delete_payment_method))
        .routes(routes!(pay::pay_order))
        .routes(routes!(pay::list_order_payments))
        .routes(routes!(refund::refund_order))
        .routes(routes!(webhook::receive_webhook))
}
