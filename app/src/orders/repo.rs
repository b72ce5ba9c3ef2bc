//! Reading orders.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    model::{Order, OrderItem, OrderSummary, StatusChange},
    OrderStatus,
};
use crate::{error::ApiError, money::Money, users::addresses::AddressSnapshot};

/// The order with its items and history, or None.
pub async fn load(conn: &mut PgConnection, order_id: Uuid) -> Result<Option<Order>, ApiError> {
    let Some(o) = sqlx::query!(
        r#"SELECT id, user_id, status AS "status: OrderStatus", currency, subtotal_minor, shipping_minor,
                  total_minor, shipping_address, billing_address, created_at, updated_at
           FROM orders WHERE id = $1"#,
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let items = sqlx::query!(
        "SELECT variant_id, warehouse_id, sku, name, unit_price_minor, quantity, line_total_minor
         FROM order_items WHERE order_id = $1 ORDER BY variant_id, warehouse_id",
        order_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let history = sqlx::query!(
        r#"SELECT from_status AS "from_status: OrderStatus", to_status AS "to_status: OrderStatus", reason, created_at
           FROM order_status_history WHERE order_id = $1 ORDER BY id"#,
        order_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let money = |minor| Money::from_db(minor, &o.currency);
    let address = |value: serde_json::Value| {
        serde_json::from_value::<AddressSnapshot>(value)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored address: {e}")))
    };
    Ok(Some(Order {
        id: o.id,
        user_id: o.user_id,
        status: o.status,
        items: items
            .into_iter()
            .map(|i| {
                Ok(OrderItem {
                    variant_id: i.variant_id,
                    sku: i.sku,
                    name: i.name,
                    warehouse_id: i.warehouse_id,
                    unit_price: money(i.unit_price_minor)?,
                    quantity: i.quantity,
                    line_total: money(i.line_total_minor)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        subtotal: money(o.subtotal_minor)?,
        shipping: money(o.shipping_minor)?,
        total: money(o.total_minor)?,
        shipping_address: address(o.shipping_address)?,
        billing_address: address(o.billing_address)?,
        created_at: o.created_at,
        updated_at: o.updated_at,
        history: history
            .into_iter()
            .map(|h| StatusChange {
                from: h.from_status,
                to: h.to_status,
                reason: h.reason,
                at: h.created_at,
            })
            .collect(),
    }))
}

/// The order if `user_id` may see it: its owner, or staff. Others get 404, as if it did
/// not exist.
pub async fn load_visible(
    conn: &mut PgConnection,
    order_id: Uuid,
    user_id: Uuid,
    staff: bool,
) -> Result<Order, ApiError> {
    load(conn, order_id)
        .await?
        .filter(|order| staff || order.user_id == user_id)
        .ok_or(ApiError::NotFound("order"))
}

/// Position in a list ordered by (created_at, id) descending.
pub struct After {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl After {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.created_at.unix_timestamp_nanos(),
            self.id
        ))
    }

    pub fn decode(cursor: &str) -> Result<Self, ApiError> {
        let invalid =
            || ApiError::bad_request("invalid_cursor", "the cursor is not one this API gave out");
        let text = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(invalid)?;
        let (nanos, id) = text.split_once(':').ok_or_else(invalid)?;
        let nanos: i128 = nanos.parse().map_err(|_| invalid())?;
        Ok(After {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// A page of orders, newest first; `user_id` None means everyone's (staff).
pub async fn list(
    conn: &mut PgConnection,
    user_id: Option<Uuid>,
    status: Option<OrderStatus>,
    after: Option<After>,
    limit: i64,
) -> Result<Vec<OrderSummary>, ApiError> {
    let rows = sqlx::query!(
        r#"SELECT o.id, o.user_id, o.status AS "status: OrderStatus", o.total_minor, o.currency, o.created_at,
                  (SELECT coalesce(sum(quantity), 0) FROM order_items i WHERE i.order_id = o.id)::bigint AS "item_count!"
           FROM orders o
           WHERE ($1::uuid IS NULL OR o.user_id = $1)
             AND ($2::text IS NULL OR o.status = $2)
             AND ($3::timestamptz IS NULL OR (o.created_at, o.id) < ($3, $4))
           ORDER BY o.created_at DESC, o.id DESC
           LIMIT $5"#,
        user_id,
        status.map(OrderStatus::as_str),
        after.as_ref().map(|a| a.created_at),
        after.as_ref().map(|a| a.id),
        limit,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(OrderSummary {
                id: r.id,
                user_id: r.user_id,
                status: r.status,
                total: Money::from_db(r.total_minor, &r.currency)?,
                item_count: r.item_count,
                created_at: r.created_at,
            })
        })
        .collect()
}
