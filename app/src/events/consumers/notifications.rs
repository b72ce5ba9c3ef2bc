//! Tells the customer: a paid order gets its confirmation email, queued for the email job.

use sqlx::PgConnection;

use crate::{
    error::ApiError,
    events::{EventType, OrderEvent},
    payments::repo::queue_confirmation,
};

pub async fn apply(conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
    match event.kind {
        EventType::Paid => queue_confirmation(conn, event.order_id, event.total).await,
        _ => Ok(()),
    }
}
