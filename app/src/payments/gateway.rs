//! The payment gateway boundary, and the deterministic gateway the shop ships with for
//! development and tests.

use async_trait::async_trait;
use uuid::Uuid;

use crate::money::Money;

/// Card details as entered; they go to the gateway and never to the database or logs.
pub struct CardDetails {
    pub number: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub cvc: String,
}

impl std::fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardDetails").field("last4", &last4(&self.number)).finish_non_exhaustive()
    }
}

pub fn last4(number: &str) -> &str {
    &number[number.len().saturating_sub(4)..]
}

/// A card stored at the gateway.
#[derive(Debug, Clone)]
pub struct Tokenized {
    pub token: String,
    pub brand: String,
    pub last4: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded { reference: String },
    /// The issuer said no; retrying will not help.
    Declined { reference: String, code: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Try again later: the gateway or the network failed, the charge did not happen.
    #[error("payment gateway temporarily unavailable")]
    Transient,
    #[error("card rejected: {0}")]
    InvalidCard(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    async fn tokenize(&self, card: &CardDetails) -> Result<Tokenized, GatewayError>;
    /// Charges a stored card. `idempotency_key` makes a retried charge return the first result.
    async fn charge(&self, token: &str, amount: Money, idempotency_key: Uuid) -> Result<ChargeOutcome, GatewayError>;
}

/// Deterministic test gateway. Card numbers (any future expiry, any 3-digit CVC):
/// - `4242424242424242`: succeeds;
/// - `4000000000000002`: declined (`card_declined`);
/// - `4000000000009995`: declined (`insufficient_funds`);
/// - `4000000000000119`: fails transiently (the gateway is "unavailable").
///
/// Other numbers that pass the Luhn check succeed; others are invalid.
pub struct TestGateway;

fn luhn_valid(number: &str) -> bool {
    let digits: Option<Vec<u32>> = number.chars().map(|c| c.to_digit(10)).collect();
    let Some(digits) = digits else { return false };
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { let x = d * 2; if x > 9 { x - 9 } else { x } } else { *d })
        .sum();
    sum % 10 == 0
}

fn brand(number: &str) -> &'static str {
    match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') => "mastercard",
        Some(b'3') => "amex",
        _ => "card",
    }
}

#[async_trait]
impl PaymentGateway for TestGateway {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn tokenize(&self, card: &CardDetails) -> Result<Tokenized, GatewayError> {
        if !luhn_valid(&card.number) {
            return Err(GatewayError::InvalidCard("the card number is not valid".into()));
        }
        if !(1..=12).contains(&card.exp_month) {
            return Err(GatewayError::InvalidCard("the expiry month must be 1 to 12".into()));
        }
        let now = time::OffsetDateTime::now_utc();
        if (card.exp_year as i32, card.exp_month) < (now.year(), u8::from(now.month())) {
            return Err(GatewayError::InvalidCard("the card has expired".into()));
        }
        if card.cvc.len() != 3 || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::InvalidCard("the CVC must be 3 digits".into()));
        }
        // The test gateway's token encodes the number so charges are deterministic; a real
        // gateway keeps the number on its side.
        Ok(Tokenized {
            token: format!("tok_test_{}", card.number),
            brand: brand(&card.number).into(),
            last4: last4(&card.number).into(),
        })
    }

    async fn charge(&self, token: &str, _amount: Money, idempotency_key: Uuid) -> Result<ChargeOutcome, GatewayError> {
        let number = token.strip_prefix("tok_test_").ok_or_else(|| GatewayError::InvalidCard("unknown token".into()))?;
        let reference = format!("ch_test_{}", idempotency_key.simple());
        match number {
            "4000000000000119" => Err(GatewayError::Transient),
            "4000000000000002" => Ok(ChargeOutcome::Declined { reference, code: "card_declined".into() }),
            "4000000000009995" => Ok(ChargeOutcome::Declined { reference, code: "insufficient_funds".into() }),
            _ => Ok(ChargeOutcome::Succeeded { reference }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        for valid in ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119"] {
            assert!(luhn_valid(valid), "{valid}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242 4242 4242 4242"));
    }

    #[test]
    fn card_debug_shows_only_last_digits() {
        let card = CardDetails { number: "4242424242424242".into(), exp_month: 1, exp_year: 2099, cvc: "123".into() };
        let text = format!("{card:?}");
        assert!(text.contains("4242") && !text.contains("42424242") && !text.contains("123"));
    }
}
