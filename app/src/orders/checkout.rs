//! Checkout: the cart becomes an order in one transaction, with its stock reserved.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    model::{CheckoutRequest, Order},
    repo, OrderStatus,
};
use crate::{
    auth::AuthUser,
    cart::{self, repo::PricedLine},
    error::{ApiError, ApiResult, Json},
    events::outbox,
    inventory::ledger,
    state::AppState,
    users::addresses::{default_address, load_address, AddressKind, AddressSnapshot},
};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// What identifies a checkout request for idempotency: its body and the cart it checks out,
/// as (variant, quantity) pairs.
fn request_hash(body: &CheckoutRequest, cart: &[(i64, i32)]) -> Vec<u8> {
    let mut cart = cart.to_vec();
    cart.sort_unstable();
    let lines: Vec<String> = cart
        .iter()
        .map(|(variant, quantity)| format!("{variant}x{quantity}"))
        .collect();
    let canonical = format!(
        "v2|{:?}|{:?}|{}",
        body.shipping_address_id,
        body.billing_address_id,
        lines.join(",")
    );
    Sha256::digest(canonical.as_bytes()).to_vec()
}

fn cart_of(lines: &[PricedLine]) -> Vec<(i64, i32)> {
    lines
        .iter()
        .map(|l| (l.line.variant_id, l.line.quantity))
        .collect()
}

/// Place an order
///
/// Turns the signed-in user's cart into an order in one transaction: prices are read afresh,
/// stock is reserved for every line (never oversold under concurrency), addresses are copied
/// into the order, and the cart is emptied. The order starts `pending_payment`; pay it with
/// `POST /orders/{id}/pay`.
///
/// With `Idempotency-Key`, a repeated request returns the first order (same status, with
/// `Idempotent-Replayed: true`); reusing the key with a different body or another cart is
/// 422 `idempotency_key_reused`. Out of stock is 409 `out_of_stock` and changes nothing.
#[utoipa::path(
    post,
    path = "/checkout",
    tag = "orders",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    request_body = CheckoutRequest,
    responses(
        (status = 201, description = "The order (or, for a repeated key, the first order)", body = Order),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, response = crate::error::responses::Unauthenticated),
        (status = 404, description = "No such address of the signed-in user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cart_empty`, `out_of_stock`, `item_unavailable`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = crate::error::responses::NotJson),
        (status = 422, description = "`address_required`, `idempotency_key_reused`, or invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is briefly unavailable; retry", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn checkout(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<CheckoutRequest>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Order>)> {
    let key = idempotency_key(&headers)?;
    let mut tx = state.db.write.begin().await?;

    // The cart lock serializes checkouts of one user, so a request repeated with the same key
    // waits for the first and then finds its order below.
    let cart_id = sqlx::query_scalar!(
        "SELECT id FROM carts WHERE user_id = $1 FOR UPDATE",
        user.id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let lines = match cart_id {
        Some(cart_id) => cart::repo::lines(&mut tx, cart_id).await?,
        None => Vec::new(),
    };
    if let Some(key) = &key {
        if let Some(replay) = replay(&mut tx, user.id, key, &body, &cart_of(&lines)).await? {
            return Ok(replay);
        }
    }
    if lines.is_empty() {
        return Err(ApiError::conflict("cart_empty", "the cart is empty"));
    }
    if let Some(gone) = lines.iter().find(|l| !l.for_sale) {
        return Err(ApiError::conflict(
            "item_unavailable",
            format!(
                "{} is no longer for sale; remove it from the cart",
                gone.line.sku
            ),
        ));
    }
    let (shipping, billing) = addresses(&mut tx, user.id, &body).await?;
    let totals = cart::pricing::totals(
        &state.config.shop,
        lines.iter().map(|l| (l.line.unit_price, l.line.quantity)),
    )?;

    let order_id = Uuid::now_v7();
    let inserted = sqlx::query_scalar!(
        "INSERT INTO orders (id, user_id, status, currency, subtotal_minor, shipping_minor, total_minor,
                             shipping_address, billing_address, idempotency_key, request_hash)
         VALUES ($1, $2, 'pending_payment', $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (user_id, idempotency_key) DO NOTHING
         RETURNING id",
        order_id,
        user.id,
        totals.total.currency.as_str(),
        totals.subtotal.amount_minor,
        totals.shipping.amount_minor,
        totals.total.amount_minor,
        serde_json::to_value(&shipping).map_err(ApiError::internal)?,
        serde_json::to_value(&billing).map_err(ApiError::internal)?,
        key.as_deref(),
        request_hash(&body, &cart_of(&lines)),
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        // Defensive: the cart lock above serializes requests with one key, so the replay check
        // normally answers first; should the unique key still conflict, answer as a replay.
        drop(tx);
        let mut conn = state.db.write.acquire().await?;
        let key = key.expect("a conflict needs a key");
        return replay(&mut conn, user.id, &key, &body, &cart_of(&lines))
            .await?
            .ok_or(ApiError::conflict("cart_empty", "the cart is empty"));
    }

    reserve_lines(&mut tx, order_id, &lines).await?;
    sqlx::query!(
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor_id, reason)
         VALUES ($1, NULL, 'pending_payment', $2, 'checkout')",
        order_id,
        user.id
    )
    .execute(&mut *tx)
    .await?;
    outbox::record(
        &mut tx,
        order_id,
        None,
        OrderStatus::PendingPayment,
        Some(user.id),
        Some("checkout"),
    )
    .await?;
    cart::repo::clear(&mut tx, cart_id.expect("lines come from a cart")).await?;
    let order = repo::load(&mut tx, order_id)
        .await?
        .expect("the order was just inserted");
    tx.commit().await?;
    Ok((StatusCode::CREATED, HeaderMap::new(), Json(order)))
}

/// Reserves every line (in variant order, so concurrent checkouts lock stock rows in the same
/// order and never deadlock) and records where the units were reserved.
async fn reserve_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &[PricedLine],
) -> ApiResult<()> {
    let mut sorted: Vec<&PricedLine> = lines.iter().collect();
    sorted.sort_by_key(|l| l.line.variant_id);
    for l in sorted {
        let line = &l.line;
        for a in ledger::reserve(&mut *conn, order_id, line.variant_id, line.quantity).await? {
            let line_total = line.unit_price.checked_mul(i64::from(a.quantity))?;
            sqlx::query!(
                "INSERT INTO order_items (order_id, variant_id, warehouse_id, sku, name, unit_price_minor, quantity, line_total_minor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                order_id,
                a.variant_id,
                a.warehouse_id,
                line.sku,
                format!("{} – {}", line.product_name, line.variant_name),
                line.unit_price.amount_minor,
                a.quantity,
                line_total.amount_minor,
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The first order placed with `key`, answered as it is now; 422 if the key came with a
/// different request. The first request emptied the cart, so a retry finding it empty is
/// compared with the cart that order was made from; a retry with another cart is refused.
async fn replay(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    body: &CheckoutRequest,
    cart: &[(i64, i32)],
) -> ApiResult<Option<(StatusCode, HeaderMap, Json<Order>)>> {
    let Some(first) = sqlx::query!(
        "SELECT id, request_hash FROM orders WHERE user_id = $1 AND idempotency_key = $2",
        user_id,
        key
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let ordered;
    let cart = if cart.is_empty() {
        ordered = ordered_cart(conn, first.id).await?;
        &ordered
    } else {
        cart
    };
    if first.request_hash.as_deref() != Some(request_hash(body, cart).as_slice()) {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    let order = repo::load(conn, first.id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    let mut headers = HeaderMap::new();
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(Some((StatusCode::CREATED, headers, Json(order))))
}

/// The cart an order was made from: its items per variant (one line may have been split
/// across warehouses).
async fn ordered_cart(conn: &mut PgConnection, order_id: Uuid) -> ApiResult<Vec<(i64, i32)>> {
    let rows = sqlx::query!(
        r#"SELECT variant_id, sum(quantity)::integer AS "quantity!" FROM order_items WHERE order_id = $1 GROUP BY variant_id"#,
        order_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.variant_id, r.quantity))
        .collect())
}

async fn addresses(
    conn: &mut PgConnection,
    user_id: Uuid,
    body: &CheckoutRequest,
) -> ApiResult<(AddressSnapshot, AddressSnapshot)> {
    let shipping = match body.shipping_address_id {
        Some(id) => load_address(conn, user_id, id).await?,
        None => default_address(conn, user_id, AddressKind::Shipping)
            .await?
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "address_required",
                    "give shipping_address_id, or set a default shipping address",
                )
            })?,
    };
    let billing = match body.billing_address_id {
        Some(id) => load_address(conn, user_id, id).await?,
        None => default_address(conn, user_id, AddressKind::Billing)
            .await?
            .unwrap_or_else(|| shipping.clone()),
    };
    Ok((shipping, billing))
}
