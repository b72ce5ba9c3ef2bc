//! What a successful payment does to its order, wherever the success is learned (the pay
//! call or the gateway's webhook).

use sqlx::PgConnection;
use uuid::Uuid;

use super::repo;
use crate::{
    error::ApiError,
    money::Money,
    orders::{transition::transition, OrderStatus},
};

/// In the caller's transaction: the order becomes paid and the payment receipt email is
/// queued. The order.paid event then commits the reserved stock and queues the order
/// confirmation (events/consumers/).
pub async fn settle(
    conn: &mut PgConnection,
    order_id: Uuid,
    payment_id: Uuid,
    total: Money,
    actor_id: Option<Uuid>,
    reason: &str,
) -> Result<(), ApiError> {
    transition(
        &mut *conn,
        order_id,
        OrderStatus::Paid,
        actor_id,
        Some(reason),
    )
    .await?;
    repo::queue_receipt(&mut *conn, order_id, payment_id, total).await
}
