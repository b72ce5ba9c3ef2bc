//! What the cart endpoints take and return.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::Money;

/// Most units of one variant in a cart, and most lines in one cart.
pub const MAX_QUANTITY: i32 = 1000;
pub const MAX_LINES: i64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CartLine {
    pub variant_id: i64,
    pub sku: String,
    pub product_name: String,
    pub variant_name: String,
    pub unit_price: Money,
    pub quantity: i32,
    pub line_total: Money,
    /// Units available now across warehouses; checkout reserves them.
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    pub subtotal: Money,
    pub shipping: Money,
    pub total: Money,
    pub item_count: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    pub variant_id: i64,
    /// Units to add to the line (1 to 1000 in all).
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// The line's new quantity; 0 removes it.
    #[schema(minimum = 0, maximum = 1000)]
    pub quantity: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnonymousCart {
    /// Send as `X-Cart-Token` on cart calls; shown once, stored only hashed.
    pub cart_token: String,
}
