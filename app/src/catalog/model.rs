//! The catalog's response types, shared by lists, search, detail and the staff endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::money::Money;

/// Whether the public sees a product. Drafts and archived products are visible to staff
/// only (in the responses of their own writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Draft,
    Active,
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BrandRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TagRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// A product as lists and search show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductSummary {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub brand: Option<BrandRef>,
    pub category: Option<CategoryRef>,
    /// The lowest price of its active variants.
    pub price: Money,
    /// Some active variant has units available (on hand and not reserved).
    pub in_stock: bool,
    pub tags: Vec<TagRef>,
}

/// A page of products; `next_cursor` is absent on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductSummary>,
    pub next_cursor: Option<String>,
}

/// A product's category with its breadcrumb.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CategoryTrail {
    pub id: i64,
    pub slug: String,
    pub name: String,
    /// From the root category down to this one, itself included.
    pub path: Vec<CategoryRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariantView {
    pub id: i64,
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub price: Money,
    /// Free-form properties such as `{"size": "M", "colour": "navy"}`.
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub active: bool,
    /// Units on hand and not reserved, over all warehouses.
    pub available: i64,
    pub in_stock: bool,
}

/// A product with everything its page shows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductDetail {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub status: ProductStatus,
    pub brand: Option<BrandRef>,
    pub category: Option<CategoryTrail>,
    pub tags: Vec<TagRef>,
    /// The lowest price of its active variants; absent when none is active.
    pub price: Option<Money>,
    pub in_stock: bool,
    /// Active variants, cheapest first (staff responses also list inactive ones).
    pub variants: Vec<VariantView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}
