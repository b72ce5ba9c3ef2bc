//! The order event, version 1: the JSON the outbox stores and Kafka carries. Its schema is
//! generated from these types into docs/events/ (a test keeps it current).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{money::Money, orders::OrderStatus};

/// The version of the event format this code writes and reads.
pub const VERSION: i32 = 1;

/// What happened to the order. One type per status an order can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "order.created")]
    Created,
    #[serde(rename = "order.paid")]
    Paid,
    #[serde(rename = "order.fulfilling")]
    Fulfilling,
    #[serde(rename = "order.shipped")]
    Shipped,
    #[serde(rename = "order.delivered")]
    Delivered,
    #[serde(rename = "order.cancelled")]
    Cancelled,
    #[serde(rename = "order.refunded")]
    Refunded,
}

impl EventType {
    /// The event of an order reaching `status` (`Created` for its first status).
    pub fn of(previous: Option<OrderStatus>, status: OrderStatus) -> Self {
        match (previous, status) {
            (None, _) => Self::Created,
            (_, OrderStatus::PendingPayment) => Self::Created,
            (_, OrderStatus::Paid) => Self::Paid,
            (_, OrderStatus::Fulfilling) => Self::Fulfilling,
            (_, OrderStatus::Shipped) => Self::Shipped,
            (_, OrderStatus::Delivered) => Self::Delivered,
            (_, OrderStatus::Cancelled) => Self::Cancelled,
            (_, OrderStatus::Refunded) => Self::Refunded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "order.created",
            Self::Paid => "order.paid",
            Self::Fulfilling => "order.fulfilling",
            Self::Shipped => "order.shipped",
            Self::Delivered => "order.delivered",
            Self::Cancelled => "order.cancelled",
            Self::Refunded => "order.refunded",
        }
    }
}

/// One change of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(
    title = "OrderEvent",
    description = "An order event, version 1, as published to the `order-events` topic keyed by `order_id`."
)]
pub struct OrderEvent {
    /// Unique per event: consumers record it and skip an event seen before.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The format version; consumers refuse versions they do not know.
    pub version: i32,
    pub order_id: Uuid,
    /// 1, 2, 3… within the order: the order in which its changes committed.
    pub sequence: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The customer who owns the order.
    pub user_id: Uuid,
    /// The status before the change; absent for `order.created`.
    pub previous_status: Option<OrderStatus>,
    /// The status after the change.
    pub status: OrderStatus,
    pub total: Money,
    /// Who made the change (the customer, staff, or absent for the system and gateway).
    pub actor_id: Option<Uuid>,
    pub reason: Option<String>,
    /// The order's lines as reserved, on `order.created` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<EventItem>>,
}

/// A line of a created order: units of one variant reserved in one warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventItem {
    pub variant_id: i64,
    pub warehouse_id: i64,
    pub sku: String,
    pub quantity: i32,
    pub unit_price: Money,
}

/// The JSON Schema (2020-12) of the event, as published in docs/events/.
pub fn json_schema() -> serde_json::Value {
    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(OrderEvent, EventItem, EventType, OrderStatus, Money)))]
    struct Schemas;
    let components = serde_json::to_value(
        <Schemas as utoipa::OpenApi>::openapi()
            .components
            .expect("the schemas above")
            .schemas,
    )
    .expect("schemas serialize");
    // OpenAPI references point into components; a JSON Schema document's point into $defs.
    let defs = serde_json::to_string(&components)
        .expect("schemas serialize")
        .replace("#/components/schemas/", "#/$defs/");
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "OrderEvent v1",
        "$ref": "#/$defs/OrderEvent",
        "$defs": serde_json::from_str::<serde_json::Value>(&defs).expect("still JSON"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn round_trips_with_the_documented_field_names() {
        let event = OrderEvent {
            id: Uuid::nil(),
            kind: EventType::Paid,
            version: VERSION,
            order_id: Uuid::nil(),
            sequence: 2,
            occurred_at: OffsetDateTime::UNIX_EPOCH,
            user_id: Uuid::nil(),
            previous_status: Some(OrderStatus::PendingPayment),
            status: OrderStatus::Paid,
            total: Money::new(1999, Currency::EUR),
            actor_id: None,
            reason: Some("paid".into()),
            items: None,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "order.paid");
        assert_eq!(json["previous_status"], "pending_payment");
        assert_eq!(json["occurred_at"], "1970-01-01T00:00:00Z");
        assert!(json.get("items").is_none());
        assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), event);
    }

    #[test]
    fn every_status_has_its_event_type() {
        for status in OrderStatus::ALL {
            let kind = EventType::of(Some(OrderStatus::PendingPayment), status);
            assert!(
                kind.as_str().ends_with(status.as_str()) || status == OrderStatus::PendingPayment
            );
        }
        assert_eq!(
            EventType::of(None, OrderStatus::PendingPayment),
            EventType::Created
        );
    }
}
