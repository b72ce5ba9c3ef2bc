//! SQL of the payments domain. Functions take a connection so callers choose the pool or
//! the transaction.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{Payment, PaymentMethod, PaymentStatus};
use crate::{error::ApiError, money::Money, orders::OrderStatus};

struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    payment_method_id: Option<Uuid>,
    gateway: String,
    gateway_reference: Option<String>,
    amount_minor: i64,
    currency: String,
    status: PaymentStatus,
    failure_code: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl PaymentRow {
    fn into_payment(self) -> Result<Payment, ApiError> {
        Ok(Payment {
            id: self.id,
            order_id: self.order_id,
            payment_method_id: self.payment_method_id,
            gateway: self.gateway,
            gateway_reference: self.gateway_reference,
            amount: Money::from_db(self.amount_minor, &self.currency)?,
            status: self.status,
            failure_code: self.failure_code,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub struct NewMethod<'a> {
    pub user_id: Uuid,
    pub gateway: &'a str,
    pub token: &'a str,
    pub brand: &'a str,
    pub last4: &'a str,
    pub exp_month: i16,
    pub exp_year: i16,
}

pub async fn insert_method(
    conn: &mut PgConnection,
    m: NewMethod<'_>,
) -> Result<PaymentMethod, ApiError> {
    Ok(sqlx::query_as!(
        PaymentMethod,
        "INSERT INTO payment_methods (id, user_id, gateway, gateway_token, brand, last4, exp_month, exp_year)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, brand, last4, exp_month, exp_year, created_at",
        Uuid::now_v7(),
        m.user_id,
        m.gateway,
        m.token,
        m.brand,
        m.last4,
        m.exp_month,
        m.exp_year,
    )
    .fetch_one(conn)
    .await?)
}

pub async fn list_methods(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<PaymentMethod>, ApiError> {
    Ok(sqlx::query_as!(
        PaymentMethod,
        "SELECT id, brand, last4, exp_month, exp_year, created_at
         FROM payment_methods WHERE user_id = $1 ORDER BY created_at, id",
        user_id
    )
    .fetch_all(conn)
    .await?)
}

/// Deletes a user's card; payments made with it keep their record but lose the link.
/// Returns false when the user has no such card.
pub async fn delete_method(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
) -> Result<bool, ApiError> {
    // The lock waits for a payment in flight with this card (which holds a key-share lock).
    let owned = sqlx::query_scalar!(
        "SELECT id FROM payment_methods WHERE id = $1 AND user_id = $2 FOR UPDATE",
        id,
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if owned.is_none() {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE payments SET payment_method_id = NULL, updated_at = now() WHERE payment_method_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM payment_methods WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// A user's card, held until the end of the transaction so it cannot be deleted while it is
/// being charged.
pub struct ChargeableMethod {
    pub id: Uuid,
    pub gateway_token: String,
}

pub async fn lock_method(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
) -> Result<Option<ChargeableMethod>, ApiError> {
    Ok(sqlx::query_as!(
        ChargeableMethod,
        "SELECT id, gateway_token FROM payment_methods WHERE id = $1 AND user_id = $2 FOR KEY SHARE",
        id,
        user_id
    )
    .fetch_optional(conn)
    .await?)
}

/// What paying and refunding need to know about an order.
pub struct OrderForPayment {
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub total: Money,
}

/// Reads and locks an order. Every payment change of an order takes this lock first, so
/// pay, refund and webhook deliveries for one order apply one after another.
pub async fn lock_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<OrderForPayment>, ApiError> {
    let row = sqlx::query!(
        r#"SELECT user_id, status AS "status: OrderStatus", total_minor, currency
           FROM orders WHERE id = $1 FOR UPDATE"#,
        order_id
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(OrderForPayment {
            user_id: r.user_id,
            status: r.status,
            total: Money::from_db(r.total_minor, &r.currency)?,
        })
    })
    .transpose()
}

pub async fn order_owner(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Uuid>, ApiError> {
    Ok(
        sqlx::query_scalar!("SELECT user_id FROM orders WHERE id = $1", order_id)
            .fetch_optional(conn)
            .await?,
    )
}

pub struct NewPayment<'a> {
    pub order_id: Uuid,
    pub payment_method_id: Option<Uuid>,
    pub gateway: &'a str,
    pub gateway_reference: Option<&'a str>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub failure_code: Option<&'a str>,
}

/// Records the gateway's answer about a charge. The reference names the charge, so the same
/// answer recorded again (a repeated decline under the same idempotency key) updates the
/// existing row of that order, and a pending row of the charge takes the outcome. A second
/// successful payment of one order is refused by the database (`order_not_payable`).
pub async fn record_payment(
    conn: &mut PgConnection,
    p: NewPayment<'_>,
) -> Result<Payment, ApiError> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"INSERT INTO payments
               (id, order_id, payment_method_id, gateway, gateway_reference, amount_minor, currency, status, failure_code)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (gateway_reference) DO UPDATE
               SET status = EXCLUDED.status, failure_code = EXCLUDED.failure_code, updated_at = now()
               WHERE payments.order_id = EXCLUDED.order_id AND payments.status IN ('pending', 'failed')
           RETURNING id, order_id, payment_method_id, gateway, gateway_reference, amount_minor,
                     currency AS "currency!", status AS "status: PaymentStatus", failure_code, created_at, updated_at"#,
        Uuid::now_v7(),
        p.order_id,
        p.payment_method_id,
        p.gateway,
        p.gateway_reference,
        p.amount.amount_minor,
        p.amount.currency.as_str(),
        p.status as PaymentStatus,
        p.failure_code,
    )
    .fetch_optional(conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => already_paid(),
        _ => e.into(),
    })?;
    row.ok_or_else(already_paid)?.into_payment()
}

fn already_paid() -> ApiError {
    ApiError::conflict(
        "order_not_payable",
        "the order already has a successful payment",
    )
}

pub async fn list_for_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<Payment>, ApiError> {
    sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, order_id, payment_method_id, gateway, gateway_reference, amount_minor,
                  currency AS "currency!", status AS "status: PaymentStatus", failure_code, created_at, updated_at
           FROM payments WHERE order_id = $1 ORDER BY created_at, id"#,
        order_id
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(PaymentRow::into_payment)
    .collect()
}

/// The order's successful payment, locked.
pub async fn lock_succeeded(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Payment>, ApiError> {
    sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, order_id, payment_method_id, gateway, gateway_reference, amount_minor,
                  currency AS "currency!", status AS "status: PaymentStatus", failure_code, created_at, updated_at
           FROM payments WHERE order_id = $1 AND status = 'succeeded' FOR UPDATE"#,
        order_id
    )
    .fetch_optional(conn)
    .await?
    .map(PaymentRow::into_payment)
    .transpose()
}

/// The payment a gateway reference names, locked; call after locking its order.
pub async fn lock_by_reference(
    conn: &mut PgConnection,
    reference: &str,
) -> Result<Option<Payment>, ApiError> {
    sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, order_id, payment_method_id, gateway, gateway_reference, amount_minor,
                  currency AS "currency!", status AS "status: PaymentStatus", failure_code, created_at, updated_at
           FROM payments WHERE gateway_reference = $1 FOR UPDATE"#,
        reference
    )
    .fetch_optional(conn)
    .await?
    .map(PaymentRow::into_payment)
    .transpose()
}

/// The order a gateway reference belongs to, without locking (to learn which order to lock).
pub async fn order_of_reference(
    conn: &mut PgConnection,
    reference: &str,
) -> Result<Option<Uuid>, ApiError> {
    Ok(sqlx::query_scalar!(
        "SELECT order_id FROM payments WHERE gateway_reference = $1",
        reference
    )
    .fetch_optional(conn)
    .await?)
}

/// Whether the order has a successful (or refunded) payment other than `except`.
pub async fn other_success(
    conn: &mut PgConnection,
    order_id: Uuid,
    except: Uuid,
) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM payments
                          WHERE order_id = $1 AND id <> $2 AND status IN ('succeeded', 'refunded')) AS "exists!""#,
        order_id,
        except
    )
    .fetch_one(conn)
    .await?)
}

pub async fn set_status(
    conn: &mut PgConnection,
    payment_id: Uuid,
    status: PaymentStatus,
    failure_code: Option<&str>,
) -> Result<Payment, ApiError> {
    sqlx::query_as!(
        PaymentRow,
        r#"UPDATE payments SET status = $2, failure_code = $3, updated_at = now() WHERE id = $1
           RETURNING id, order_id, payment_method_id, gateway, gateway_reference, amount_minor,
                     currency AS "currency!", status AS "status: PaymentStatus", failure_code, created_at, updated_at"#,
        payment_id,
        status as PaymentStatus,
        failure_code,
    )
    .fetch_one(conn)
    .await?
    .into_payment()
}

/// Queues the payment receipt email (sent by the worker) to the order's owner, keyed by the
/// payment so that one payment is at most one receipt.
pub async fn queue_receipt(
    conn: &mut PgConnection,
    order_id: Uuid,
    payment_id: Uuid,
    total: Money,
) -> Result<(), ApiError> {
    let recipient = sqlx::query_scalar!(
        "SELECT u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $1",
        order_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    let payload =
        serde_json::json!({ "order_id": order_id, "payment_id": payment_id, "total": total });
    crate::jobs::enqueue_email(
        conn,
        &format!("payment-receipt:{payment_id}"),
        &recipient,
        "payment_receipt",
        payload,
    )
    .await?;
    Ok(())
}

/// Records a webhook delivery; false when an event with this id was recorded before.
pub async fn record_event(
    conn: &mut PgConnection,
    event_id: &str,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<bool, ApiError> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO webhook_events (event_id, event_type, payload) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        event_id,
        event_type,
        payload,
    )
    .fetch_optional(conn)
    .await
    .map_err(|e| match &e {
        // untranslatable_character: a \u0000 escape, which jsonb cannot store.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("22P05") => {
            ApiError::bad_request(
                "invalid_event",
                "not a gateway event: the body contains \\u0000",
            )
        }
        _ => e.into(),
    })?;
    Ok(inserted.is_some())
}
