//! Inventory queries. Stock changes themselves go through `ledger`, which keeps the stock
//! rows and the movements in step.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sqlx::PgConnection;

use super::model::{LowStock, Movement, MovementKind, VariantStock, Warehouse, WarehouseStock};
use crate::error::{ApiError, FieldError};

/// A variant's stock in every warehouse; None when the variant does not exist.
pub async fn variant_stock(
    conn: &mut PgConnection,
    variant_id: i64,
) -> Result<Option<VariantStock>, ApiError> {
    let Some(variant) = sqlx::query!(
        "SELECT v.id, v.sku, v.name, p.name AS product_name
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id = $1",
        variant_id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let warehouses = sqlx::query_as!(
        WarehouseStock,
        r#"SELECT s.warehouse_id, w.code AS warehouse_code, w.name AS warehouse_name, s.on_hand, s.reserved,
                  s.on_hand - s.reserved AS "available!", s.low_stock_threshold, s.updated_at
           FROM stock s JOIN warehouses w ON w.id = s.warehouse_id
           WHERE s.variant_id = $1
           ORDER BY s.warehouse_id"#,
        variant_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let sum =
        |f: fn(&WarehouseStock) -> i32| warehouses.iter().map(|w| i64::from(f(w))).sum::<i64>();
    Ok(Some(VariantStock {
        variant_id: variant.id,
        sku: variant.sku,
        product_name: variant.product_name,
        variant_name: variant.name,
        on_hand: sum(|w| w.on_hand),
        reserved: sum(|w| w.reserved),
        available: sum(|w| w.available),
        warehouses,
    }))
}

/// The variant and warehouse a stock request names must exist: 422 with a pointer otherwise.
pub async fn check_references(
    conn: &mut PgConnection,
    variant_id: i64,
    warehouse_id: i64,
) -> Result<(), ApiError> {
    let found = sqlx::query!(
        r#"SELECT EXISTS (SELECT 1 FROM variants WHERE id = $1) AS "variant!",
                  EXISTS (SELECT 1 FROM warehouses WHERE id = $2) AS "warehouse!""#,
        variant_id,
        warehouse_id
    )
    .fetch_one(conn)
    .await?;
    let mut errors = Vec::new();
    if !found.variant {
        errors.push(FieldError {
            field: "/variant_id".into(),
            message: "no variant has this id".into(),
        });
    }
    if !found.warehouse {
        errors.push(FieldError {
            field: "/warehouse_id".into(),
            message: "no warehouse has this id".into(),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Stock rows with no more available than their threshold: the emptiest first, then those
/// furthest below their threshold.
pub async fn low_stock(conn: &mut PgConnection, limit: i64) -> Result<Vec<LowStock>, ApiError> {
    Ok(sqlx::query_as!(
        LowStock,
        r#"SELECT s.variant_id, v.sku, p.name AS product_name, v.name AS variant_name,
                  s.warehouse_id, w.code AS warehouse_code, s.on_hand, s.reserved,
                  s.on_hand - s.reserved AS "available!", s.low_stock_threshold
           FROM stock s
           JOIN variants v ON v.id = s.variant_id
           JOIN products p ON p.id = v.product_id
           JOIN warehouses w ON w.id = s.warehouse_id
           WHERE s.on_hand - s.reserved <= s.low_stock_threshold
           ORDER BY s.on_hand - s.reserved, s.on_hand - s.reserved - s.low_stock_threshold, s.variant_id, s.warehouse_id
           LIMIT $1"#,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// Position in the ledger, which is read newest (highest id) first.
pub struct After(pub i64);

impl After {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("movement:{}", self.0))
    }

    pub fn decode(cursor: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_cursor",
                "the cursor is not one this endpoint issued",
            )
        };
        let text = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(invalid)?;
        let id = text
            .strip_prefix("movement:")
            .and_then(|id| id.parse().ok())
            .ok_or_else(invalid)?;
        Ok(After(id))
    }
}

/// A page of the ledger, newest first.
pub async fn movements(
    conn: &mut PgConnection,
    variant_id: Option<i64>,
    warehouse_id: Option<i64>,
    after: Option<After>,
    limit: i64,
) -> Result<Vec<Movement>, ApiError> {
    Ok(sqlx::query_as!(
        Movement,
        r#"SELECT id, variant_id, warehouse_id, kind AS "kind: MovementKind", on_hand_delta, reserved_delta,
                  order_id, actor_id, reason, created_at
           FROM inventory_movements
           WHERE ($1::bigint IS NULL OR variant_id = $1)
             AND ($2::bigint IS NULL OR warehouse_id = $2)
             AND ($3::bigint IS NULL OR id < $3)
           ORDER BY id DESC
           LIMIT $4"#,
        variant_id,
        warehouse_id,
        after.map(|a| a.0),
        limit
    )
    .fetch_all(conn)
    .await?)
}

pub async fn warehouses(conn: &mut PgConnection) -> Result<Vec<Warehouse>, ApiError> {
    Ok(sqlx::query_as!(
        Warehouse,
        "SELECT id, code, name FROM warehouses ORDER BY id"
    )
    .fetch_all(conn)
    .await?)
}

/// A new warehouse; 409 `warehouse_code_taken` when the code is in use.
pub async fn create_warehouse(
    conn: &mut PgConnection,
    code: &str,
    name: &str,
) -> Result<Warehouse, ApiError> {
    sqlx::query_as!(
        Warehouse,
        "INSERT INTO warehouses (code, name) VALUES ($1, $2) RETURNING id, code, name",
        code,
        name
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::conflict("warehouse_code_taken", "another warehouse has this code")
        }
        _ => e.into(),
    })
}
