//! The order life cycle as an explicit state machine.
//!
//! ```text
//! pending_payment ──► paid ──► fulfilling ──► shipped ──► delivered
//!        │              │           │                         │
//!        ▼              ▼           ▼                         ▼
//!    cancelled       refunded    refunded                  refunded
//! ```
//! Cancelling an unpaid order releases its reserved stock; refunding before shipment puts the
//! committed stock back on hand.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilling,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

/// What a transition does to stock, beyond the status change itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockEffect {
    None,
    /// Reserved units leave the warehouse: on_hand and reserved both drop.
    Commit,
    /// Reserved units become available again.
    Release,
    /// Committed units come back on hand.
    Restock,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Fulfilling,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Fulfilling => "fulfilling",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The legal next states.
    pub fn next(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            PendingPayment => &[Paid, Cancelled],
            Paid => &[Fulfilling, Refunded],
            Fulfilling => &[Shipped, Refunded],
            Shipped => &[Delivered],
            Delivered => &[Refunded],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_become(self, to: OrderStatus) -> bool {
        self.next().contains(&to)
    }

    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }

    /// The stock effect of a legal transition `self -> to`.
    pub fn stock_effect(self, to: OrderStatus) -> StockEffect {
        use OrderStatus::*;
        match (self, to) {
            (PendingPayment, Paid) => StockEffect::Commit,
            (PendingPayment, Cancelled) => StockEffect::Release,
            (Paid | Fulfilling, Refunded) => StockEffect::Restock,
            _ => StockEffect::None,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = OrderStatus> {
        proptest::sample::select(OrderStatus::ALL.to_vec())
    }

    /// Units (reserved, committed) an order holds in each state.
    fn held(status: OrderStatus) -> (i32, i32) {
        use OrderStatus::*;
        match status {
            PendingPayment => (1, 0),
            Paid | Fulfilling => (0, 1),
            // Shipped and delivered units have left; cancelled and refunded ones are back.
            Shipped | Delivered | Cancelled | Refunded => (0, 0),
        }
    }

    proptest! {
        /// Any sequence of attempted transitions from a new order follows only legal edges,
        /// and the stock effects keep reservations balanced: what is reserved is later
        /// committed or released exactly once, and restocks only return committed units.
        #[test]
        fn random_walks_keep_stock_balanced(attempts in proptest::collection::vec(status(), 0..40)) {
            let mut current = OrderStatus::PendingPayment;
            let (mut reserved, mut committed, mut shipped) = (1i32, 0i32, 0i32);
            for to in attempts {
                if !current.can_become(to) {
                    continue;
                }
                match current.stock_effect(to) {
                    StockEffect::Commit => { reserved -= 1; committed += 1; }
                    StockEffect::Release => { reserved -= 1; }
                    StockEffect::Restock => { committed -= 1; }
                    StockEffect::None => {}
                }
                if to == OrderStatus::Shipped { committed -= 1; shipped += 1; }
                current = to;
                prop_assert!(reserved >= 0 && committed >= 0);
                prop_assert_eq!((reserved, committed), held(current));
            }
            prop_assert!(shipped <= 1);
        }

        #[test]
        fn terminal_states_have_no_exit(from in status(), to in status()) {
            if from.is_terminal() {
                prop_assert!(!from.can_become(to));
            }
        }

        #[test]
        fn no_self_loops_and_no_way_back_to_pending(from in status()) {
            prop_assert!(!from.can_become(from));
            prop_assert!(!from.can_become(OrderStatus::PendingPayment));
        }

        #[test]
        fn names_round_trip(s in status()) {
            prop_assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn every_state_is_reachable_from_pending() {
        let mut seen = vec![OrderStatus::PendingPayment];
        let mut i = 0;
        while i < seen.len() {
            for next in seen[i].next() {
                if !seen.contains(next) {
                    seen.push(*next);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), OrderStatus::ALL.len());
    }
}
