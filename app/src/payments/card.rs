//! Card details as a client sends them. The number and CVC are secrets: they go to the
//! gateway and nowhere else, so their parse errors never echo them and their `Debug` hides
//! them.

use serde::{de::Error as _, Deserialize, Deserializer};
use utoipa::ToSchema;

use super::gateway::{CardDetails, CardField};
use crate::error::FieldError;

/// A card number or CVC as sent. Wrong JSON types are refused without quoting the value
/// (serde's own message would, e.g. "invalid type: integer `4242…`").
pub struct CardSecret(String);

impl std::fmt::Debug for CardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardSecret(..)")
    }
}

impl<'de> Deserialize<'de> for CardSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(CardSecret(s)),
            _ => Err(D::Error::custom("expected a string of digits")),
        }
    }
}

/// A payment card. Test cards (any future expiry, any 3-digit CVC): `4242424242424242`
/// succeeds; `4000000000000002` is declined (`card_declined`); `4000000000009995` is
/// declined (`insufficient_funds`); `4000000000000119` fails transiently (503).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CardInput {
    /// 12 to 19 digits; spaces and dashes between them are ignored. Never stored.
    #[schema(value_type = String, example = "4242424242424242")]
    pub number: CardSecret,
    #[schema(minimum = 1, maximum = 12, example = 12)]
    pub exp_month: i64,
    /// Four-digit year.
    #[schema(minimum = 2000, maximum = 9999, example = 2030)]
    pub exp_year: i64,
    /// 3 or 4 digits. Never stored.
    #[schema(value_type = String, example = "123")]
    pub cvc: CardSecret,
}

fn invalid(field: CardField, message: &str) -> FieldError {
    FieldError {
        field: field.pointer().into(),
        message: message.into(),
    }
}

fn digits(s: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

impl CardInput {
    /// The card in the form the gateway takes, or the first field that cannot be a card's.
    /// The gateway checks the rest (check digit, expiry against today).
    pub fn parse(self) -> Result<CardDetails, FieldError> {
        let number: String = self
            .number
            .0
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if !digits(&number, 12..=19) {
            return Err(invalid(CardField::Number, "must be 12 to 19 digits"));
        }
        let exp_month = u8::try_from(self.exp_month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(|| invalid(CardField::ExpMonth, "must be 1 to 12"))?;
        let exp_year = u16::try_from(self.exp_year)
            .ok()
            .filter(|y| (2000..=9999).contains(y))
            .ok_or_else(|| invalid(CardField::ExpYear, "must be a four-digit year"))?;
        let cvc = self.cvc.0;
        if !digits(&cvc, 3..=4) {
            return Err(invalid(CardField::Cvc, "must be 3 or 4 digits"));
        }
        Ok(CardDetails {
            number,
            exp_month,
            exp_year,
            cvc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> Result<CardInput, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn spaces_and_dashes_are_ignored() {
        let card = input(serde_json::json!({
            "number": "4242 4242-4242 4242", "exp_month": 1, "exp_year": 2099, "cvc": "123"
        }))
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(card.number, "4242424242424242");
    }

    #[test]
    fn wrong_types_do_not_echo_the_secret() {
        let error = input(serde_json::json!({
            "number": 4242424242424242u64, "exp_month": 1, "exp_year": 2099, "cvc": 987
        }))
        .unwrap_err()
        .to_string();
        assert!(
            !error.contains("4242424242424242") && !error.contains("987"),
            "{error}"
        );
    }

    #[test]
    fn each_field_is_checked() {
        let field = |json| input(json).unwrap().parse().unwrap_err().field;
        let base = |k: &str, v: serde_json::Value| {
            let mut card = serde_json::json!({ "number": "4242424242424242", "exp_month": 1, "exp_year": 2099, "cvc": "123" });
            card[k] = v;
            card
        };
        assert_eq!(field(base("number", "4242x".into())), "/card/number");
        assert_eq!(field(base("exp_month", 0.into())), "/card/exp_month");
        assert_eq!(field(base("exp_month", 300.into())), "/card/exp_month");
        assert_eq!(field(base("exp_year", (-1).into())), "/card/exp_year");
        assert_eq!(field(base("cvc", "12345".into())), "/card/cvc");
    }

    #[test]
    fn debug_hides_secrets() {
        let card = input(serde_json::json!({
            "number": "4242424242424242", "exp_month": 1, "exp_year": 2099, "cvc": "123"
        }))
        .unwrap();
        let text = format!("{card:?}");
        assert!(!text.contains("4242") && !text.contains("123"), "{text}");
    }
}
