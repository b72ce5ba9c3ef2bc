//! Stock changes. Each one updates the `stock` row and appends its movement in the same
//! transaction, so for every (variant, warehouse) the ledger sums to the stock level.
//! All functions take the caller's transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;

/// Units of one variant taken from one warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub variant_id: i64,
    pub warehouse_id: i64,
    pub quantity: i32,
}

fn out_of_stock(variant_id: i64) -> ApiError {
    ApiError::conflict(
        "out_of_stock",
        format!("not enough stock for variant {variant_id}"),
    )
}

/// Reserves `quantity` units of a variant for an order, from the warehouses with the most
/// available first. Concurrent reservations serialize on the stock rows, and the check
/// `on_hand - reserved >= n` is re-evaluated under the row lock, so stock is never oversold.
/// On `out_of_stock` the caller's transaction must be rolled back (partial reservations
/// are part of it).
pub async fn reserve(
    conn: &mut PgConnection,
    order_id: Uuid,
    variant_id: i64,
    quantity: i32,
) -> Result<Vec<Allocation>, ApiError> {
    let mut allocations = Vec::new();
    let mut needed = quantity;
    while needed > 0 {
        // FOR UPDATE waits for concurrent reservations of the row and then re-reads it, so
        // `available` is current while we hold the lock.
        let candidate = sqlx::query!(
            r#"SELECT warehouse_id, on_hand - reserved AS "available!"
               FROM stock
               WHERE variant_id = $1 AND on_hand > reserved
               ORDER BY on_hand - reserved DESC, warehouse_id
               LIMIT 1
               FOR UPDATE"#,
            variant_id,
        )
        .fetch_optional(&mut *conn)
        .await?;
        let Some(candidate) = candidate else {
            return Err(out_of_stock(variant_id));
        };
        let take = needed.min(candidate.available);
        sqlx::query!(
            "UPDATE stock SET reserved = reserved + $3, updated_at = now()
             WHERE variant_id = $1 AND warehouse_id = $2",
            variant_id,
            candidate.warehouse_id,
            take,
        )
        .execute(&mut *conn)
        .await?;
        let allocation = Allocation {
            variant_id,
            warehouse_id: candidate.warehouse_id,
            quantity: take,
        };
        record(
            &mut *conn,
            &allocation,
            "reserve",
            0,
            take,
            Some(order_id),
            None,
            None,
        )
        .await?;
        needed -= allocation.quantity;
        allocations.push(allocation);
    }
    Ok(allocations)
}

/// Reserved units leave stock (the order was paid).
pub async fn commit(
    conn: &mut PgConnection,
    order_id: Uuid,
    allocations: &[Allocation],
) -> Result<(), ApiError> {
    for a in allocations {
        sqlx::query!(
            "UPDATE stock SET on_hand = on_hand - $3, reserved = reserved - $3, updated_at = now()
             WHERE variant_id = $1 AND warehouse_id = $2",
            a.variant_id,
            a.warehouse_id,
            a.quantity,
        )
        .execute(&mut *conn)
        .await?;
        record(
            &mut *conn,
            a,
            "commit",
            -a.quantity,
            -a.quantity,
            Some(order_id),
            None,
            None,
        )
        .await?;
    }
    Ok(())
}

/// Reserved units become available again (an unpaid order was cancelled).
pub async fn release(
    conn: &mut PgConnection,
    order_id: Uuid,
    allocations: &[Allocation],
) -> Result<(), ApiError> {
    for a in allocations {
        sqlx::query!(
            "UPDATE stock SET reserved = reserved - $3, updated_at = now()
             WHERE variant_id = $1 AND warehouse_id = $2",
            a.variant_id,
            a.warehouse_id,
            a.quantity,
        )
        .execute(&mut *conn)
        .await?;
        record(
            &mut *conn,
            a,
            "release",
            0,
            -a.quantity,
            Some(order_id),
            None,
            None,
        )
        .await?;
    }
    Ok(())
}

/// Committed units come back on hand (a paid order was refunded before shipping).
pub async fn return_to_stock(
    conn: &mut PgConnection,
    order_id: Uuid,
    allocations: &[Allocation],
) -> Result<(), ApiError> {
    for a in allocations {
        restock_row(&mut *conn, a.variant_id, a.warehouse_id, a.quantity).await?;
        record(
            &mut *conn,
            a,
            "restock",
            a.quantity,
            0,
            Some(order_id),
            None,
            Some("order refunded"),
        )
        .await?;
    }
    Ok(())
}

/// Staff receive goods: adds units on hand, creating the stock row if needed.
pub async fn restock(
    conn: &mut PgConnection,
    variant_id: i64,
    warehouse_id: i64,
    quantity: i32,
    actor: Uuid,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    if quantity <= 0 {
        return Err(ApiError::invalid("/quantity", "must be at least 1"));
    }
    restock_row(&mut *conn, variant_id, warehouse_id, quantity).await?;
    let a = Allocation {
        variant_id,
        warehouse_id,
        quantity,
    };
    record(
        &mut *conn,
        &a,
        "restock",
        quantity,
        0,
        None,
        Some(actor),
        reason,
    )
    .await
}

/// Staff correct the count (breakage, a stocktake): `delta` may be negative, but on-hand
/// can never drop below what is reserved for orders.
pub async fn adjust(
    conn: &mut PgConnection,
    variant_id: i64,
    warehouse_id: i64,
    delta: i32,
    actor: Uuid,
    reason: &str,
) -> Result<(), ApiError> {
    if delta == 0 {
        return Err(ApiError::invalid("/delta", "must not be zero"));
    }
    let updated = sqlx::query_scalar!(
        "UPDATE stock SET on_hand = on_hand + $3, updated_at = now()
         WHERE variant_id = $1 AND warehouse_id = $2 AND on_hand + $3 >= reserved
         RETURNING on_hand",
        variant_id,
        warehouse_id,
        delta,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if updated.is_none() {
        let exists = sqlx::query_scalar!(
            "SELECT 1 AS \"one!\" FROM stock WHERE variant_id = $1 AND warehouse_id = $2",
            variant_id,
            warehouse_id
        )
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match exists {
            None => ApiError::NotFound("stock for this variant and warehouse"),
            Some(_) => ApiError::conflict(
                "insufficient_stock",
                "the adjustment would leave fewer units on hand than are reserved",
            ),
        });
    }
    let a = Allocation {
        variant_id,
        warehouse_id,
        quantity: delta,
    };
    record(
        &mut *conn,
        &a,
        "adjust",
        delta,
        0,
        None,
        Some(actor),
        Some(reason),
    )
    .await
}

async fn restock_row(
    conn: &mut PgConnection,
    variant_id: i64,
    warehouse_id: i64,
    quantity: i32,
) -> Result<(), ApiError> {
    sqlx::query!(
        "INSERT INTO stock (variant_id, warehouse_id, on_hand) VALUES ($1, $2, $3)
         ON CONFLICT (variant_id, warehouse_id)
         DO UPDATE SET on_hand = stock.on_hand + EXCLUDED.on_hand, updated_at = now()",
        variant_id,
        warehouse_id,
        quantity,
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            ApiError::NotFound("variant or warehouse")
        }
        _ => e.into(),
    })?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record(
    conn: &mut PgConnection,
    a: &Allocation,
    kind: &str,
    on_hand_delta: i32,
    reserved_delta: i32,
    order_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    sqlx::query!(
        "INSERT INTO inventory_movements
             (variant_id, warehouse_id, kind, on_hand_delta, reserved_delta, order_id, actor_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        a.variant_id,
        a.warehouse_id,
        kind,
        on_hand_delta,
        reserved_delta,
        order_id,
        actor_id,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
