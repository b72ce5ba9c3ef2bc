//! Cart queries.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    model::{Cart, CartLine, MAX_LINES, MAX_QUANTITY},
    pricing, CartOwner,
};
use crate::{config::ShopConfig, error::ApiError, money::Money};

/// The owner's cart, if it has one. An anonymous token that names no cart is 404: the cart
/// expired or the token is wrong, and the client should start a new one.
pub async fn find(conn: &mut PgConnection, owner: &CartOwner) -> Result<Option<Uuid>, ApiError> {
    match owner {
        CartOwner::User(user_id) => Ok(sqlx::query_scalar!(
            "SELECT id FROM carts WHERE user_id = $1",
            user_id
        )
        .fetch_optional(conn)
        .await?),
        CartOwner::Anonymous(hash) => {
            let id = sqlx::query_scalar!("SELECT id FROM carts WHERE token_hash = $1", hash)
                .fetch_optional(conn)
                .await?;
            id.map(Some).ok_or(ApiError::NotFound("cart"))
        }
    }
}

/// The owner's cart, created for a user on first use.
pub async fn find_or_create(conn: &mut PgConnection, owner: &CartOwner) -> Result<Uuid, ApiError> {
    match owner {
        CartOwner::User(user_id) => Ok(sqlx::query_scalar!(
            "INSERT INTO carts (id, user_id) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET updated_at = now()
             RETURNING id",
            Uuid::now_v7(),
            user_id
        )
        .fetch_one(conn)
        .await?),
        CartOwner::Anonymous(_) => Ok(find(conn, owner)
            .await?
            .expect("anonymous find is Some or 404")),
    }
}

pub async fn create_anonymous(conn: &mut PgConnection, token_hash: &[u8]) -> Result<(), ApiError> {
    sqlx::query!(
        "INSERT INTO carts (id, token_hash) VALUES ($1, $2)",
        Uuid::now_v7(),
        token_hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds units of a variant for sale, keeping the line and cart limits.
pub async fn add(
    conn: &mut PgConnection,
    cart_id: Uuid,
    variant_id: i64,
    quantity: i32,
) -> Result<(), ApiError> {
    let for_sale = sqlx::query_scalar!(
        r#"SELECT v.currency AS "currency!" FROM variants v JOIN products p ON p.id = v.product_id
           WHERE v.id = $1 AND v.active AND p.status = 'active'"#,
        variant_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if for_sale.is_none() {
        return Err(ApiError::invalid("/variant_id", "no such variant for sale"));
    }
    // Lock the cart so the line limit holds under concurrent adds.
    sqlx::query!("SELECT id FROM carts WHERE id = $1 FOR UPDATE", cart_id)
        .fetch_one(&mut *conn)
        .await?;
    let existing = sqlx::query_scalar!(
        "SELECT quantity FROM cart_lines WHERE cart_id = $1 AND variant_id = $2",
        cart_id,
        variant_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let new_quantity = existing.unwrap_or(0) + quantity;
    if new_quantity > MAX_QUANTITY {
        return Err(ApiError::invalid(
            "/quantity",
            format!("a line holds at most {MAX_QUANTITY} units"),
        ));
    }
    if existing.is_none() {
        let lines = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM cart_lines WHERE cart_id = $1"#,
            cart_id
        )
        .fetch_one(&mut *conn)
        .await?;
        if lines >= MAX_LINES {
            return Err(ApiError::conflict(
                "cart_full",
                format!("a cart holds at most {MAX_LINES} lines"),
            ));
        }
    }
    sqlx::query!(
        "INSERT INTO cart_lines (cart_id, variant_id, quantity) VALUES ($1, $2, $3)
         ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = EXCLUDED.quantity",
        cart_id,
        variant_id,
        new_quantity
    )
    .execute(&mut *conn)
    .await?;
    touch(conn, cart_id).await
}

/// Sets a line's quantity (0 removes it); 404 when the cart has no such line.
pub async fn set_quantity(
    conn: &mut PgConnection,
    cart_id: Uuid,
    variant_id: i64,
    quantity: i32,
) -> Result<(), ApiError> {
    let changed = if quantity == 0 {
        sqlx::query!(
            "DELETE FROM cart_lines WHERE cart_id = $1 AND variant_id = $2",
            cart_id,
            variant_id
        )
        .execute(&mut *conn)
        .await?
    } else {
        sqlx::query!(
            "UPDATE cart_lines SET quantity = $3 WHERE cart_id = $1 AND variant_id = $2",
            cart_id,
            variant_id,
            quantity
        )
        .execute(&mut *conn)
        .await?
    };
    if changed.rows_affected() == 0 {
        return Err(ApiError::NotFound("cart line"));
    }
    touch(conn, cart_id).await
}

pub async fn clear(conn: &mut PgConnection, cart_id: Uuid) -> Result<(), ApiError> {
    sqlx::query!("DELETE FROM cart_lines WHERE cart_id = $1", cart_id)
        .execute(&mut *conn)
        .await?;
    touch(conn, cart_id).await
}

async fn touch(conn: &mut PgConnection, cart_id: Uuid) -> Result<(), ApiError> {
    sqlx::query!("UPDATE carts SET updated_at = now() WHERE id = $1", cart_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A cart line with what checkout needs to know about its variant.
#[derive(Debug, Clone)]
pub struct PricedLine {
    pub line: CartLine,
    /// The variant and its product are still for sale.
    pub for_sale: bool,
}

/// The cart's lines with current prices and availability, in the order they were added.
pub async fn lines(conn: &mut PgConnection, cart_id: Uuid) -> Result<Vec<PricedLine>, ApiError> {
    let rows = sqlx::query!(
        r#"SELECT l.variant_id, v.sku, p.name AS product_name, v.name AS variant_name,
                  v.price_minor, v.currency, l.quantity,
                  (v.active AND p.status = 'active') AS "for_sale!",
                  COALESCE((SELECT sum(s.on_hand - s.reserved) FROM stock s WHERE s.variant_id = l.variant_id), 0)::bigint AS "available!"
           FROM cart_lines l
           JOIN variants v ON v.id = l.variant_id
           JOIN products p ON p.id = v.product_id
           WHERE l.cart_id = $1
           ORDER BY l.added_at, l.variant_id"#,
        cart_id
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let unit_price = Money::from_db(r.price_minor, &r.currency)?;
            let line_total = unit_price.checked_mul(i64::from(r.quantity))?;
            Ok(PricedLine {
                line: CartLine {
                    variant_id: r.variant_id,
                    sku: r.sku,
                    product_name: r.product_name,
                    variant_name: r.variant_name,
                    unit_price,
                    quantity: r.quantity,
                    line_total,
                    available: r.available,
                },
                for_sale: r.for_sale,
            })
        })
        .collect()
}

/// The cart as the API shows it.
pub fn view(shop: &ShopConfig, lines: Vec<PricedLine>) -> Result<Cart, ApiError> {
    let lines: Vec<CartLine> = lines.into_iter().map(|l| l.line).collect();
    let totals = pricing::totals(shop, lines.iter().map(|l| (l.unit_price, l.quantity)))?;
    Ok(Cart {
        item_count: lines.iter().map(|l| i64::from(l.quantity)).sum(),
        lines,
        subtotal: totals.subtotal,
        shipping: totals.shipping,
        total: totals.total,
    })
}
