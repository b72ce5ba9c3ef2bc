//! What a successful payment does to its order, wherever the success is learned (the pay
//! call or the gateway's webhook).

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    error::ApiError,
    orders::{transition::transition, OrderStatus},
};

/// In the caller's transaction: the order becomes paid. Its order.paid event then commits the
/// reserved stock and queues the confirmation email (events/consumers/).
pub async fn settle(
    conn: &mut PgConnection,
    order_id: Uuid,
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
    Ok(())
}
