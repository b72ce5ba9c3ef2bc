//! What the inventory endpoints take and return.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, FieldError};

/// Largest quantity one restock or adjustment may move: a typo guard, far above any delivery.
pub const MAX_UNITS: i32 = 1_000_000;
pub const MAX_REASON_CHARS: usize = 500;

/// Stock of one variant in one warehouse.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WarehouseStock {
    pub warehouse_id: i64,
    pub warehouse_code: String,
    pub warehouse_name: String,
    /// Units physically in the warehouse.
    pub on_hand: i32,
    /// Units held for orders awaiting payment.
    pub reserved: i32,
    /// `on_hand - reserved`: what checkout can still reserve.
    pub available: i32,
    /// At or below this many available units the row is reported as low stock.
    pub low_stock_threshold: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A variant's stock in every warehouse that holds it, with totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariantStock {
    pub variant_id: i64,
    pub sku: String,
    pub product_name: String,
    pub variant_name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    /// By warehouse id.
    pub warehouses: Vec<WarehouseStock>,
}

/// Goods received.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    pub variant_id: i64,
    pub warehouse_id: i64,
    /// Units received, 1 to 1000000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i32,
    /// Kept in the ledger (a delivery note, a supplier).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A correction of the count: breakage, loss, a stocktake.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    pub variant_id: i64,
    pub warehouse_id: i64,
    /// Units to add (positive) or remove (negative); not 0. On-hand may not drop below
    /// what is reserved for orders.
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    pub delta: i32,
    /// Why the count changed; required, kept in the ledger.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// A stock row at or below its low-stock threshold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LowStock {
    pub variant_id: i64,
    pub sku: String,
    pub product_name: String,
    pub variant_name: String,
    pub warehouse_id: i64,
    pub warehouse_code: String,
    pub on_hand: i32,
    pub reserved: i32,
    pub available: i32,
    pub low_stock_threshold: i32,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LowStockQuery {
    /// 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Why stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum MovementKind {
    /// Checkout held units for an order.
    Reserve,
    /// A paid order's units left stock.
    Commit,
    /// A cancelled order's units became available again.
    Release,
    /// Units came in: a delivery, or a refund before shipping.
    Restock,
    /// Staff corrected the count.
    Adjust,
}

/// One entry of the append-only stock ledger.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Movement {
    pub id: i64,
    pub variant_id: i64,
    pub warehouse_id: i64,
    pub kind: MovementKind,
    pub on_hand_delta: i32,
    pub reserved_delta: i32,
    /// The order that caused it, for reserve, commit, release and refund restocks.
    pub order_id: Option<Uuid>,
    /// The staff member who made it, for restocks and adjustments.
    pub actor_id: Option<Uuid>,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MovementPage {
    /// Newest first.
    pub items: Vec<Movement>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovementQuery {
    /// Only this variant's movements.
    pub variant_id: Option<i64>,
    /// Only this warehouse's movements.
    pub warehouse_id: Option<i64>,
    /// 1 to 100; 50 when absent.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Warehouse {
    pub id: i64,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWarehouse {
    /// 1 to 32 of `A-Z`, `0-9`, `-`, `_`; unique.
    #[schema(pattern = "^[A-Z0-9_-]{1,32}$")]
    pub code: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

/// A free-text reason: trimmed, not blank, at most 500 characters.
fn check_reason(field: &str, reason: &str) -> Result<String, FieldError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(FieldError {
            field: field.into(),
            message: "must not be blank".into(),
        });
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(FieldError {
            field: field.into(),
            message: format!("at most {MAX_REASON_CHARS} characters"),
        });
    }
    Ok(reason.to_owned())
}

fn finish(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

impl RestockRequest {
    /// The request with its reason trimmed, or every problem with it.
    pub fn checked(mut self) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        if !(1..=MAX_UNITS).contains(&self.quantity) {
            errors.push(FieldError {
                field: "/quantity".into(),
                message: format!("must be 1 to {MAX_UNITS}"),
            });
        }
        if let Some(reason) = &self.reason {
            match check_reason("/reason", reason) {
                Ok(trimmed) => self.reason = Some(trimmed),
                Err(e) => errors.push(e),
            }
        }
        finish(errors).map(|()| self)
    }
}

impl AdjustRequest {
    /// The request with its reason trimmed, or every problem with it.
    pub fn checked(mut self) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        if self.delta == 0 || !(-MAX_UNITS..=MAX_UNITS).contains(&self.delta) {
            errors.push(FieldError {
                field: "/delta".into(),
                message: format!("must be -{MAX_UNITS} to {MAX_UNITS}, not 0"),
            });
        }
        match check_reason("/reason", &self.reason) {
            Ok(trimmed) => self.reason = trimmed,
            Err(e) => errors.push(e),
        }
        finish(errors).map(|()| self)
    }
}

impl NewWarehouse {
    /// The request with its name trimmed, or every problem with it.
    pub fn checked(mut self) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let code_ok = (1..=32).contains(&self.code.len())
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !code_ok {
            errors.push(FieldError {
                field: "/code".into(),
                message: "1 to 32 of A-Z, 0-9, '-' and '_'".into(),
            });
        }
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(FieldError {
                field: "/name".into(),
                message: "1 to 200 characters, not blank".into(),
            });
        }
        self.name = name.to_owned();
        finish(errors).map(|()| self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjust(delta: i32, reason: &str) -> AdjustRequest {
        AdjustRequest {
            variant_id: 1,
            warehouse_id: 1,
            delta,
            reason: reason.into(),
        }
    }

    #[test]
    fn an_adjustment_needs_a_nonzero_delta_and_a_reason() {
        assert_eq!(adjust(-3, "  broken  ").checked().unwrap().reason, "broken");
        let ApiError::Validation(errors) = adjust(0, " ").checked().unwrap_err() else {
            panic!()
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["/delta", "/reason"]);
        assert!(adjust(MAX_UNITS + 1, "x").checked().is_err());
        assert!(adjust(-MAX_UNITS, "x").checked().is_ok());
    }

    #[test]
    fn a_restock_moves_at_least_one_unit() {
        let restock = |quantity, reason: Option<&str>| RestockRequest {
            variant_id: 1,
            warehouse_id: 1,
            quantity,
            reason: reason.map(Into::into),
        };
        assert!(restock(1, None).checked().is_ok());
        assert!(restock(0, None).checked().is_err());
        assert!(restock(5, Some("")).checked().is_err());
        assert!(restock(5, Some(&"x".repeat(501))).checked().is_err());
    }

    #[test]
    fn warehouse_codes_are_upper_case_words() {
        let new = |code: &str, name: &str| NewWarehouse {
            code: code.into(),
            name: name.into(),
        };
        assert_eq!(new("BER-1", " Berlin ").checked().unwrap().name, "Berlin");
        for bad in ["", "ber", "B B", &"A".repeat(33), "ÄB"] {
            assert!(new(bad, "x").checked().is_err(), "{bad:?}");
        }
        assert!(new("OK", "  ").checked().is_err());
    }
}
