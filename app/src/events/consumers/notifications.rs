//! Tells the customer: a paid order gets its confirmation email, queued for the email job
//! under a key of its own, so the email is queued once however often the event arrives.

use sqlx::PgConnection;

use crate::{
    error::ApiError,
    events::{EventType, OrderEvent},
};

pub async fn apply(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
    if event.kind != EventType::Paid {
        return Ok(());
    }
    let recipient = sqlx::query_scalar!("SELECT email FROM users WHERE id = $1", event.user_id)
        .fetch_one(&mut *conn)
        .await?;
    let payload = serde_json::json!({
        "order_id": event.order_id,
        "total_minor": event.total.amount_minor,
        "currency": event.total.currency,
    });
    crate::jobs::enqueue_email(
        conn,
        &format!("order-confirmation:{}", event.order_id),
        &recipient,
        "order_confirmation",
        payload,
    )
    .await?;
    Ok(())
}
