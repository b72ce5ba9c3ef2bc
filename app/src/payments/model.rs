//! The payments API's request and response types.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::card::CardInput;
use crate::{money::Money, orders::OrderStatus};

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPaymentMethod {
    pub card: CardInput,
}

/// A stored card: the gateway keeps the number; the shop keeps what identifies it to the
/// customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethod {
    pub id: Uuid,
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Sent to the gateway, outcome not yet known (settled by the webhook).
    Pending,
    Succeeded,
    Failed,
    Refunded,
}

/// One attempt to pay an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The card charged; null once the customer deleted it.
    pub payment_method_id: Option<Uuid>,
    pub gateway: String,
    /// The gateway's id of the charge.
    pub gateway_reference: Option<String>,
    pub amount: Money,
    pub status: PaymentStatus,
    /// Why the gateway refused the charge (`card_declined`, `insufficient_funds`, ...).
    pub failure_code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PayRequest {
    /// One of the customer's stored payment methods.
    pub payment_method_id: Uuid,
}

/// A payment and the status its order now has.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentResult {
    pub payment: Payment,
    pub order_status: OrderStatus,
}

/// A gateway event, as delivered to the webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookEvent {
    /// The gateway's event id; a redelivery carries the same id.
    #[schema(example = "evt_123")]
    pub id: String,
    /// `payment.succeeded`, `payment.failed` or `payment.refunded`; other types are
    /// recorded and ignored.
    #[serde(rename = "type")]
    #[schema(example = "payment.succeeded")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookData {
    /// The gateway's id of the charge the event is about.
    pub gateway_reference: String,
    /// For `payment.failed`: the decline code.
    #[serde(default)]
    pub failure_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// The event changed a payment (and possibly its order).
    Processed,
    /// An event with this id was received before; nothing was done again.
    Duplicate,
    /// Recorded, but there was nothing to do: an unknown type or charge reference, or the
    /// payment was already in the reported state.
    Ignored,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub status: WebhookStatus,
}
