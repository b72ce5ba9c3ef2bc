//! What each warehouse must ship: one request per warehouse when an order is paid, cancelled
//! again when the order is refunded before it shipped.

use sqlx::PgConnection;

use crate::{
    error::ApiError,
    events::{EventType, OrderEvent},
};

pub async fn apply(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
    match event.kind {
        EventType::Paid => {
            sqlx::query!(
                "INSERT INTO warehouse_requests (order_id, warehouse_id, items)
                 SELECT order_id, warehouse_id,
                        jsonb_agg(jsonb_build_object('variant_id', variant_id, 'sku', sku, 'quantity', quantity)
                                  ORDER BY variant_id)
                 FROM order_items WHERE order_id = $1
                 GROUP BY order_id, warehouse_id
                 ON CONFLICT (order_id, warehouse_id) DO NOTHING",
                event.order_id
            )
            .execute(conn)
            .await?;
        }
        EventType::Refunded => {
            sqlx::query!(
                "UPDATE warehouse_requests SET cancelled_at = now()
                 WHERE order_id = $1 AND cancelled_at IS NULL",
                event.order_id
            )
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
