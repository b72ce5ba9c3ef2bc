//! A sales counter: paid orders and revenue, refunds and refunded amounts, per UTC day and
//! currency.

use sqlx::PgConnection;

use crate::{
    error::ApiError,
    events::{EventType, OrderEvent},
};

pub async fn apply(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
    let (orders, revenue, refunds, refunded) = match event.kind {
        EventType::Paid => (1, event.total.amount_minor, 0, 0),
        EventType::Refunded => (0, 0, 1, event.total.amount_minor),
        _ => return Ok(()),
    };
    sqlx::query!(
        "INSERT INTO sales_daily (day, currency, orders, revenue_minor, refunds, refunded_minor)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (day, currency) DO UPDATE SET
             orders = sales_daily.orders + excluded.orders,
             revenue_minor = sales_daily.revenue_minor + excluded.revenue_minor,
             refunds = sales_daily.refunds + excluded.refunds,
             refunded_minor = sales_daily.refunded_minor + excluded.refunded_minor",
        event.occurred_at.date(),
        event.total.currency.as_str(),
        orders,
        revenue,
        refunds,
        refunded,
    )
    .execute(conn)
    .await?;
    Ok(())
}
