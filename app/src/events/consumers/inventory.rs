//! Stock follows the order: paid commits the reservation, cancelled releases it, refunded
//! before delivery puts the goods back on hand (orders/status.rs says which is which).

use sqlx::PgConnection;

use crate::{
    error::ApiError,
    events::OrderEvent,
    inventory::ledger,
    orders::{status::StockEffect, transition::allocations},
};

pub async fn apply(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
    let Some(previous) = event.previous_status else {
        // order.created: checkout reserved the stock in its own transaction.
        return Ok(());
    };
    let effect = previous.stock_effect(event.status);
    if effect == StockEffect::None {
        return Ok(());
    }
    let allocations = allocations(&mut *conn, event.order_id).await?;
    match effect {
        StockEffect::Commit => ledger::commit(conn, event.order_id, &allocations).await,
        StockEffect::Release => ledger::release(conn, event.order_id, &allocations).await,
        StockEffect::Restock => ledger::return_to_stock(conn, event.order_id, &allocations).await,
        StockEffect::None => Ok(()),
    }
}
