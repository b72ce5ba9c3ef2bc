//! The payment gateway boundary, and the deterministic gateway the shop ships with for
//! development and tests.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
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
        f.debug_struct("CardDetails")
            .field("last4", &last4(&self.number))
            .finish_non_exhaustive()
    }
}

pub fn last4(number: &str) -> &str {
    &number[number.len().saturating_sub(4)..]
}

/// The card field a gateway rejected, so the API can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardField {
    Number,
    ExpMonth,
    ExpYear,
    Cvc,
}

impl CardField {
    /// The JSON pointer of the field in `POST /payment-methods`.
    pub fn pointer(self) -> &'static str {
        match self {
            Self::Number => "/card/number",
            Self::ExpMonth => "/card/exp_month",
            Self::ExpYear => "/card/exp_year",
            Self::Cvc => "/card/cvc",
        }
    }
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
    Succeeded {
        reference: String,
    },
    /// The issuer said no; retrying will not help.
    Declined {
        reference: String,
        code: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Try again later: the gateway or the network failed, the charge did not happen.
    #[error("payment gateway temporarily unavailable")]
    Transient,
    /// The card (or a stored token) is not usable. The message never contains card digits.
    #[error("card rejected: {message}")]
    InvalidCard { field: CardField, message: String },
}

impl GatewayError {
    fn invalid(field: CardField, message: &str) -> Self {
        Self::InvalidCard {
            field,
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    async fn tokenize(&self, card: &CardDetails) -> Result<Tokenized, GatewayError>;
    /// Charges a stored card. `idempotency_key` makes a retried charge return the first result.
    async fn charge(
        &self,
        token: &str,
        amount: Money,
        idempotency_key: Uuid,
    ) -> Result<ChargeOutcome, GatewayError>;
    /// Refunds a charge in full. `idempotency_key` makes a retried refund a no-op.
    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        idempotency_key: Uuid,
    ) -> Result<(), GatewayError>;
}

/// Deterministic test gateway. Card numbers (any future expiry, any 3-digit CVC):
/// - `4242424242424242`: succeeds;
/// - `4000000000000002`: declined (`card_declined`);
/// - `4000000000009995`: declined (`insufficient_funds`);
/// - `4000000000000119`: fails transiently (the gateway is "unavailable").
///
/// Other numbers that pass the Luhn check succeed; others are invalid. Refunds always
/// succeed. Charge references are `ch_test_<idempotency key>`, so a retried charge returns
/// the same reference, as a real gateway's idempotency does.
pub struct TestGateway;

/// How a test card behaves when charged; the token carries it.
fn behaviour(number: &str) -> &'static str {
    match number {
        "4000000000000119" => "unavailable",
        "4000000000000002" => "card_declined",
        "4000000000009995" => "insufficient_funds",
        _ => "ok",
    }
}

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
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
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
            return Err(GatewayError::invalid(
                CardField::Number,
                "the card number is not valid",
            ));
        }
        if !(1..=12).contains(&card.exp_month) {
            return Err(GatewayError::invalid(
                CardField::ExpMonth,
                "the expiry month must be 1 to 12",
            ));
        }
        let now = time::OffsetDateTime::now_utc();
        if (card.exp_year as i32, card.exp_month) < (now.year(), u8::from(now.month())) {
            return Err(GatewayError::invalid(
                CardField::ExpYear,
                "the card has expired",
            ));
        }
        if card.cvc.len() != 3 || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::invalid(
                CardField::Cvc,
                "the CVC must be 3 digits",
            ));
        }
        // Deterministic, yet the number cannot be read back from the token: the token names
        // the card's behaviour and a digest of the card, as a real gateway's opaque id would
        // stand for the number it keeps on its side.
        let digest = Sha256::new()
            .chain_update(card.number.as_bytes())
            .chain_update([card.exp_month])
            .chain_update(card.exp_year.to_be_bytes())
            .finalize();
        Ok(Tokenized {
            token: format!(
                "tok_test_{}_{}",
                behaviour(&card.number),
                &hex::encode(digest)[..24]
            ),
            brand: brand(&card.number).into(),
            last4: last4(&card.number).into(),
        })
    }

    async fn charge(
        &self,
        token: &str,
        _amount: Money,
        idempotency_key: Uuid,
    ) -> Result<ChargeOutcome, GatewayError> {
        let unknown = || {
            GatewayError::invalid(
                CardField::Number,
                "the stored card is unknown to the gateway",
            )
        };
        let rest = token.strip_prefix("tok_test_").ok_or_else(unknown)?;
        let (kind, _digest) = rest.rsplit_once('_').ok_or_else(unknown)?;
        let reference = format!("ch_test_{}", idempotency_key.simple());
        match kind {
            "unavailable" => Err(GatewayError::Transient),
            "card_declined" | "insufficient_funds" => Ok(ChargeOutcome::Declined {
                reference,
                code: kind.into(),
            }),
            "ok" => Ok(ChargeOutcome::Succeeded { reference }),
            _ => Err(unknown()),
        }
    }

    async fn refund(
        &self,
        _reference: &str,
        _amount: Money,
        _idempotency_key: Uuid,
    ) -> Result<(), GatewayError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn card(number: &str) -> CardDetails {
        CardDetails {
            number: number.into(),
            exp_month: 12,
            exp_year: 2099,
            cvc: "123".into(),
        }
    }

    #[test]
    fn luhn() {
        for valid in [
            "4242424242424242",
            "4000000000000002",
            "4000000000009995",
            "4000000000000119",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242 4242 4242 4242"));
    }

    #[test]
    fn card_debug_shows_only_last_digits() {
        let card = CardDetails {
            number: "4242424242424242".into(),
            exp_month: 1,
            exp_year: 2099,
            cvc: "123".into(),
        };
        let text = format!("{card:?}");
        assert!(text.contains("4242") && !text.contains("42424242") && !text.contains("123"));
    }

    #[tokio::test]
    async fn tokens_are_deterministic_and_hide_the_number() {
        let a = TestGateway
            .tokenize(&card("4242424242424242"))
            .await
            .unwrap();
        let b = TestGateway
            .tokenize(&card("4242424242424242"))
            .await
            .unwrap();
        assert_eq!(a.token, b.token);
        assert!(!a.token.contains("42424242"), "{}", a.token);
        assert_eq!((a.brand.as_str(), a.last4.as_str()), ("visa", "4242"));
    }

    #[tokio::test]
    async fn test_cards_behave_as_documented() {
        let eur = Money::new(1000, Currency::EUR);
        let key = Uuid::nil();
        let charge = |number: &'static str| async move {
            let token = TestGateway.tokenize(&card(number)).await.unwrap().token;
            TestGateway.charge(&token, eur, key).await
        };
        let reference = format!("ch_test_{}", key.simple());
        assert_eq!(
            charge("4242424242424242").await.unwrap(),
            ChargeOutcome::Succeeded {
                reference: reference.clone()
            }
        );
        assert_eq!(
            charge("4000000000000002").await.unwrap(),
            ChargeOutcome::Declined {
                reference: reference.clone(),
                code: "card_declined".into()
            }
        );
        assert_eq!(
            charge("4000000000009995").await.unwrap(),
            ChargeOutcome::Declined {
                reference,
                code: "insufficient_funds".into()
            }
        );
        assert!(matches!(
            charge("4000000000000119").await,
            Err(GatewayError::Transient)
        ));
        assert!(matches!(
            TestGateway.charge("tok_other", eur, key).await,
            Err(GatewayError::InvalidCard { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_cards_name_the_field() {
        let field = |c: CardDetails| async move {
            match TestGateway.tokenize(&c).await {
                Err(GatewayError::InvalidCard { field, .. }) => Some(field),
                _ => None,
            }
        };
        assert_eq!(
            field(card("4242424242424241")).await,
            Some(CardField::Number)
        );
        assert_eq!(
            field(CardDetails {
                exp_month: 13,
                ..card("4242424242424242")
            })
            .await,
            Some(CardField::ExpMonth)
        );
        assert_eq!(
            field(CardDetails {
                exp_year: 2001,
                ..card("4242424242424242")
            })
            .await,
            Some(CardField::ExpYear)
        );
        assert_eq!(
            field(CardDetails {
                cvc: "12".into(),
                ..card("4242424242424242")
            })
            .await,
            Some(CardField::Cvc)
        );
    }
}
