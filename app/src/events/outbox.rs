//! Writing an order's event into the outbox, inside the transaction that changes the order.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{EventItem, EventType, OrderEvent, VERSION};
use crate::{
    money::{Currency, Money},
    orders::OrderStatus,
};

/// Records that `order_id` went from `previous` to `status`. The caller holds the order's row
/// lock (checkout inserted it, a transition locked it), so the per-order sequence below is
/// taken by one transaction at a time.
pub async fn record(
    conn: &mut PgConnection,
    order_id: Uuid,
    previous: Option<OrderStatus>,
    status: OrderStatus,
    actor_id: Option<Uuid>,
    reason: Option<&str>,
) -> Result<OrderEvent, sqlx::Error> {
    let order = sqlx::query!(
        "SELECT user_id, currency, total_minor,
                (SELECT coalesce(max(order_seq), 0) + 1 FROM order_events WHERE order_id = $1) AS \"sequence!\"
         FROM orders WHERE id = $1",
        order_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let currency: Currency = order
        .currency
        .parse()
        .map_err(|_| sqlx::Error::Decode(format!("order currency {:?}", order.currency).into()))?;
    let kind = EventType::of(previous, status);
    let items = match kind {
        EventType::Created => Some(items(&mut *conn, order_id, currency).await?),
        _ => None,
    };
    let event = OrderEvent {
        id: Uuid::now_v7(),
        kind,
        version: VERSION,
        order_id,
        sequence: order.sequence,
        occurred_at: OffsetDateTime::now_utc(),
        user_id: order.user_id,
        previous_status: previous,
        status,
        total: Money::new(order.total_minor, currency),
        actor_id,
        reason: reason.map(str::to_owned),
        items,
    };
    sqlx::query!(
        "INSERT INTO order_events (id, order_id, order_seq, type, version, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
        event.id,
        order_id,
        event.sequence,
        kind.as_str(),
        VERSION,
        serde_json::to_value(&event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
    )
    .execute(&mut *conn)
    .await?;
    Ok(event)
}

async fn items(
    conn: &mut PgConnection,
    order_id: Uuid,
    currency: Currency,
) -> Result<Vec<EventItem>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT variant_id, warehouse_id, sku, quantity, unit_price_minor
         FROM order_items WHERE order_id = $1 ORDER BY variant_id, warehouse_id",
        order_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| EventItem {
            variant_id: r.variant_id,
            warehouse_id: r.warehouse_id,
            sku: r.sku,
            quantity: r.quantity,
            unit_price: Money::new(r.unit_price_minor, currency),
        })
        .collect())
}
