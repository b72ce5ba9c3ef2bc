//! The consumers of order events, each in its own consumer group with its own offsets, and
//! each applying an event in one transaction together with its processed_events row.

mod analytics;
mod fulfilment;
mod inventory;
mod notifications;

use sqlx::PgConnection;

use super::OrderEvent;
use crate::{error::ApiError, orders::status::StockEffect};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Consumer {
    /// Commits, releases or restocks the order's reserved stock.
    Inventory,
    /// Queues the order confirmation email.
    Notifications,
    /// Writes the warehouse requests of a paid order.
    Fulfilment,
    /// Counts sales and refunds per day.
    Analytics,
}

impl Consumer {
    pub const ALL: [Consumer; 4] = [
        Self::Inventory,
        Self::Notifications,
        Self::Fulfilment,
        Self::Analytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Notifications => "notifications",
            Self::Fulfilment => "fulfilment",
            Self::Analytics => "analytics",
        }
    }

    /// Whether applying `event` changes what catalog pages show (their stock).
    pub fn changes_catalog(self, event: &OrderEvent) -> bool {
        self == Self::Inventory
            && event
                .previous_status
                .is_some_and(|from| from.stock_effect(event.status) != StockEffect::None)
    }

    /// Applies `event` in the caller's transaction.
    pub async fn apply(self, conn: &mut PgConnection, event: &OrderEvent) -> Result<(), ApiError> {
        match self {
            Self::Inventory => inventory::apply(conn, event).await,
            Self::Notifications => notifications::apply(conn, event).await,
            Self::Fulfilment => fulfilment::apply(conn, event).await,
            Self::Analytics => analytics::apply(conn, event).await,
        }
    }
}
