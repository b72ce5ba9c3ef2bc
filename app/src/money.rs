//! Money in integer minor units with its currency. Floats never hold an amount: sums and
//! products are checked, and amounts of different currencies never mix.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An ISO 4217 code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency code must be three upper-case letters (ISO 4217), got {0:?}")]
    BadCurrency(String),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_uppercase) => Ok(Currency([*a, *b, *c])),
            _ => Err(MoneyError::BadCurrency(s.to_owned())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{3}$"))
            .description(Some("ISO 4217 currency code"))
            .examples([serde_json::json!("EUR")])
            .into()
    }
}

impl ToSchema for Currency {}

/// An amount of money: `amount_minor` in the currency's minor unit (cents for EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// From the `(amount, char(3))` pair the database stores.
    pub fn from_db(amount_minor: i64, currency: &str) -> Result<Self, MoneyError> {
        Ok(Self::new(amount_minor, currency.trim_end().parse()?))
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        let amount = self
            .amount_minor
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Sums amounts of one currency; an empty sum is zero in `currency`.
    pub fn sum(
        currency: Currency,
        amounts: impl IntoIterator<Item = Money>,
    ) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }
}

impl fmt::Display for Money {
    /// `12.34 EUR`: two decimals, which is right for the currencies the shop sells in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn currency() -> impl Strategy<Value = Currency> {
        prop_oneof![
            Just(Currency::EUR),
            Just(Currency::USD),
            Just(Currency(*b"GBP"))
        ]
    }

    fn amount() -> impl Strategy<Value = i64> {
        prop_oneof![-1_000_000_000i64..1_000_000_000, any::<i64>()]
    }

    proptest! {
        #[test]
        fn addition_is_commutative_and_exact(a in amount(), b in amount(), c in currency()) {
            let (x, y) = (Money::new(a, c), Money::new(b, c));
            prop_assert_eq!(x.checked_add(y), y.checked_add(x));
            match a.checked_add(b) {
                Some(sum) => prop_assert_eq!(x.checked_add(y), Ok(Money::new(sum, c))),
                None => prop_assert_eq!(x.checked_add(y), Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn addition_is_associative_when_in_range(a in -1i64<<40..1i64<<40, b in -1i64<<40..1i64<<40, d in -1i64<<40..1i64<<40) {
            let m = |v| Money::new(v, Currency::EUR);
            let left = m(a).checked_add(m(b)).and_then(|s| s.checked_add(m(d)));
            let right = m(b).checked_add(m(d)).and_then(|s| m(a).checked_add(s));
            prop_assert_eq!(left, right);
        }

        #[test]
        fn subtraction_undoes_addition(a in -1i64<<60..1i64<<60, b in -1i64<<60..1i64<<60, c in currency()) {
            let (x, y) = (Money::new(a, c), Money::new(b, c));
            prop_assert_eq!(x.checked_add(y).and_then(|s| s.checked_sub(y)), Ok(x));
        }

        #[test]
        fn currencies_never_mix(a in amount(), b in amount()) {
            let err = Money::new(a, Currency::EUR).checked_add(Money::new(b, Currency::USD));
            prop_assert_eq!(err, Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::USD)));
        }

        #[test]
        fn multiplication_is_repeated_addition(price in 0i64..10_000_000, qty in 0i64..1000) {
            let unit = Money::new(price, Currency::EUR);
            let repeated = Money::sum(Currency::EUR, std::iter::repeat_n(unit, qty as usize));
            prop_assert_eq!(unit.checked_mul(qty), repeated);
        }

        #[test]
        fn multiplication_overflow_is_an_error(price in any::<i64>(), qty in any::<i64>()) {
            let result = Money::new(price, Currency::EUR).checked_mul(qty);
            prop_assert_eq!(result.is_ok(), price.checked_mul(qty).is_some());
        }

        #[test]
        fn sum_matches_integer_sum(amounts in proptest::collection::vec(-1i64<<50..1i64<<50, 0..50)) {
            let total = Money::sum(Currency::EUR, amounts.iter().map(|a| Money::new(*a, Currency::EUR)));
            prop_assert_eq!(total, Ok(Money::new(amounts.iter().sum(), Currency::EUR)));
        }

        #[test]
        fn display_shows_exact_minor_units(a in any::<i64>()) {
            let text = Money::new(a, Currency::EUR).to_string();
            let number = text.trim_end_matches(" EUR").replace('.', "");
            prop_assert_eq!(number.parse::<i128>().unwrap(), a as i128);
        }

        #[test]
        fn json_round_trips(a in any::<i64>(), c in currency()) {
            let m = Money::new(a, c);
            let back: Money = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn currency_codes_parse_only_when_valid(s in "\\PC{0,5}") {
            let valid = s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase());
            prop_assert_eq!(s.parse::<Currency>().is_ok(), valid);
        }
    }

    #[test]
    fn database_codes_may_be_padded() {
        assert_eq!(
            Money::from_db(5, "EUR").unwrap(),
            Money::new(5, Currency::EUR)
        );
        assert!(Money::from_db(5, "eur").is_err());
    }
}
