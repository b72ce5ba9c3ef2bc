//! Idempotency keys sent to the gateway, derived from what they protect, so a retried
//! request (after a timeout, a crash, a lost response) repeats the same gateway call instead
//! of making a second one.

use sha2::{Digest, Sha256};
use uuid::Uuid;

fn derive(parts: &[&[u8]]) -> Uuid {
    let digest = parts
        .iter()
        .fold(Sha256::new(), |hash, part| hash.chain_update(part))
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One charge per (order, card): retrying with the same card repeats the first attempt's
/// answer at the gateway; paying with another card after a decline is a new attempt.
pub fn charge_key(order_id: Uuid, payment_method_id: Uuid) -> Uuid {
    derive(&[
        b"shop:charge:",
        order_id.as_bytes(),
        payment_method_id.as_bytes(),
    ])
}

/// One refund per payment.
pub fn refund_key(payment_id: Uuid) -> Uuid {
    derive(&[b"shop:refund:", payment_id.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let (order, card, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(charge_key(order, card), charge_key(order, card));
        assert_ne!(charge_key(order, card), charge_key(order, other));
        assert_ne!(charge_key(order, card), charge_key(card, order));
        assert_ne!(refund_key(order), charge_key(order, card));
    }
}
