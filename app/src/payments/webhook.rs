//! The gateway's webhook: signed event deliveries that settle payments the gateway decided
//! after (or without) our pay call.
//!
//! Signature scheme: the `Shop-Signature` header is `t=<unix seconds>,v1=<hex>` where the
//! hex is HMAC-SHA256 with the shared webhook secret over `"<t>.<raw body>"`. Several `v1`
//! entries may be sent (secret rotation); one must match. Timestamps further than the
//! configured tolerance from now, in either direction, are refused (replays).

use axum::{body::Bytes, extract::State, http::HeaderMap};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use sqlx::PgConnection;

use super::{
    model::{PaymentStatus, WebhookAck, WebhookEvent, WebhookStatus},
    problem::{invalid_signature, stale_signature},
    repo,
    settle::settle,
};
use crate::{
    error::{ApiError, ApiResult, Json},
    orders::{transition::transition, OrderStatus},
    state::AppState,
};

pub const SIGNATURE_HEADER: &str = "shop-signature";

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Shop-Signature` header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag.as_slice()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature timestamp is outside the accepted window")]
    Stale,
}

/// Checks a `Shop-Signature` header against the exact body bytes, in constant time, and
/// then its timestamp against `now` (unix seconds). A stale answer thus only ever goes to a
/// sender who knows the secret.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", v)) => {
                candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            // Other schemes may be added by the gateway; they are not ours to check.
            _ => {}
        }
    }
    let t_text = timestamp.ok_or(SignatureError::Malformed)?;
    if t_text.is_empty() || !t_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    let t: i64 = t_text.parse().map_err(|_| SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = mac(secret, t_text, body);
    if !candidates
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    if (i128::from(now) - i128::from(t)).unsigned_abs() > u128::from(tolerance_s) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Receive a gateway event
///
/// Authenticated by the `Shop-Signature` header instead of a bearer token:
/// `Shop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, "<t>.<raw body>")>`.
/// The HMAC covers the exact bytes of the body. Several `v1` entries may be given (secret
/// rotation). A missing, malformed or non-matching signature is 401 `invalid_signature`; a
/// valid one whose timestamp is more than the configured tolerance (300 s by default) from
/// the server's clock is 401 `stale_signature`.
///
/// Events: `payment.succeeded` settles a pending payment (the order becomes paid if it is
/// still awaiting payment); `payment.failed` marks a pending payment failed with
/// `data.failure_code`; `payment.refunded` marks a successful payment refunded and refunds
/// its order when the order allows it. Each event id is processed once: a redelivery answers
/// `{"status":"duplicate"}` and changes nothing. Events about an unknown charge reference,
/// of an unknown type, or reporting a state the payment already has are recorded and
/// answered `{"status":"ignored"}` (200, so the gateway stops redelivering them; the
/// shop records every charge it makes, so an unknown reference is not the shop's).
#[utoipa::path(
    post,
    path = "/payments/webhook",
    tag = "payments",
    params(("Shop-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`")),
    request_body = WebhookEvent,
    responses(
        (status = 200, description = "Accepted: processed, duplicate or ignored", body = WebhookAck),
        (status = 400, description = "Signed, but not an event (`invalid_event`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_signature` or `stale_signature`", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(invalid_signature("the Shop-Signature header is missing"))?
        .to_str()
        .map_err(|_| invalid_signature("the Shop-Signature header is not text"))?;
    let secret = state
        .config
        .payments
        .webhook_secret
        .expose_secret()
        .as_bytes();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verify(
        secret,
        header,
        &body,
        now,
        state.config.payments.webhook_tolerance_s,
    )
    .map_err(|error| match error {
        SignatureError::Malformed => invalid_signature("the Shop-Signature header is malformed"),
        SignatureError::Mismatch => invalid_signature("the signature does not match the body"),
        SignatureError::Stale => stale_signature(),
    })?;

    let invalid =
        |why: &str| ApiError::bad_request("invalid_event", format!("not a gateway event: {why}"));
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| invalid("the body is not JSON"))?;
    let event = WebhookEvent::deserialize(&payload).map_err(|e| invalid(&e.to_string()))?;
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(invalid("id must be 1 to 255 characters"));
    }
    // PostgreSQL text cannot hold NUL characters.
    let texts = [
        Some(&event.id),
        Some(&event.kind),
        Some(&event.data.gateway_reference),
        event.data.failure_code.as_ref(),
    ];
    if texts.into_iter().flatten().any(|text| text.contains('\0')) {
        return Err(invalid("text must not contain NUL characters"));
    }

    let mut tx = state.db.write.begin().await?;
    // Concurrent deliveries of one event serialize on its key; the later one sees it.
    if !repo::record_event(&mut tx, &event.id, &event.kind, &payload).await? {
        return Ok(Json(WebhookAck {
            status: WebhookStatus::Duplicate,
        }));
    }
    let status = apply(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Json(WebhookAck { status }))
}

async fn apply(conn: &mut PgConnection, event: &WebhookEvent) -> Result<WebhookStatus, ApiError> {
    let reference = event.data.gateway_reference.as_str();
    let to = match event.kind.as_str() {
        "payment.succeeded" => PaymentStatus::Succeeded,
        "payment.failed" => PaymentStatus::Failed,
        "payment.refunded" => PaymentStatus::Refunded,
        _ => return Ok(WebhookStatus::Ignored),
    };
    // Lock the order before the payment, in the order pay and refund take them.
    let Some(order_id) = repo::order_of_reference(&mut *conn, reference).await? else {
        return Ok(WebhookStatus::Ignored);
    };
    let Some(order) = repo::lock_order(&mut *conn, order_id).await? else {
        return Ok(WebhookStatus::Ignored);
    };
    let Some(payment) = repo::lock_by_reference(&mut *conn, reference).await? else {
        return Ok(WebhookStatus::Ignored);
    };
    match (payment.status, to) {
        (PaymentStatus::Pending, PaymentStatus::Succeeded) => {
            if repo::other_success(&mut *conn, order_id, payment.id).await? {
                // The customer was charged twice; the second charge needs a refund by hand.
                tracing::warn!(%order_id, payment_id = %payment.id, "second successful charge of an order; left pending");
                return Ok(WebhookStatus::Ignored);
            }
            repo::set_status(&mut *conn, payment.id, PaymentStatus::Succeeded, None).await?;
            if order.status == OrderStatus::PendingPayment {
                settle(
                    &mut *conn,
                    order_id,
                    payment.id,
                    order.total,
                    None,
                    "payment succeeded (gateway webhook)",
                )
                .await?;
            }
        }
        (PaymentStatus::Pending, PaymentStatus::Failed) => {
            let code = event.data.failure_code.as_deref().unwrap_or("declined");
            repo::set_status(&mut *conn, payment.id, PaymentStatus::Failed, Some(code)).await?;
        }
        (PaymentStatus::Succeeded, PaymentStatus::Refunded) => {
            repo::set_status(&mut *conn, payment.id, PaymentStatus::Refunded, None).await?;
            if order.status.can_become(OrderStatus::Refunded) {
                transition(
                    &mut *conn,
                    order_id,
                    OrderStatus::Refunded,
                    None,
                    Some("refunded at the gateway"),
                )
                .await?;
            } else {
                tracing::warn!(%order_id, status = %order.status, "payment refunded at the gateway; order left as is");
            }
        }
        _ => return Ok(WebhookStatus::Ignored),
    }
    Ok(WebhookStatus::Processed)
}
