//! Moving an order to a new status: checked against the state machine, with a history row
//! and the order event, all in the caller's transaction. The event carries the stock effect
//! to the inventory consumer (events/consumers/inventory.rs), which applies it once.

use sqlx::PgConnection;
use uuid::Uuid;

use super::status::OrderStatus;
use crate::{error::ApiError, events::outbox, inventory::ledger::Allocation};

/// Moves `order_id` to `to`, returning the status it had. The order row is locked first, so
/// concurrent transitions of one order apply one after another and each is checked against
/// the state the previous one left.
pub async fn transition(
    conn: &mut PgConnection,
    order_id: Uuid,
    to: OrderStatus,
    actor_id: Option<Uuid>,
    reason: Option<&str>,
) -> Result<OrderStatus, ApiError> {
    let from = sqlx::query_scalar!(
        r#"SELECT status AS "status: OrderStatus" FROM orders WHERE id = $1 FOR UPDATE"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound("order"))?;

    if !from.can_become(to) {
        return Err(ApiError::conflict(
            "invalid_transition",
            format!("an order that is {from} cannot become {to}"),
        ));
    }

    sqlx::query!(
        "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1",
        order_id,
        to.as_str()
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor_id, reason)
         VALUES ($1, $2, $3, $4, $5)",
        order_id,
        from.as_str(),
        to.as_str(),
        actor_id,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    outbox::record(&mut *conn, order_id, Some(from), to, actor_id, reason).await?;
    Ok(from)
}

/// The warehouse allocations recorded on the order's items at checkout.
pub async fn allocations(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<Allocation>, ApiError> {
    let rows = sqlx::query!(
        "SELECT variant_id, warehouse_id, quantity FROM order_items WHERE order_id = $1 ORDER BY variant_id, warehouse_id",
        order_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Allocation {
            variant_id: r.variant_id,
            warehouse_id: r.warehouse_id,
            quantity: r.quantity,
        })
        .collect())
}
