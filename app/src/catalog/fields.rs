//! Checks of request fields that serde cannot express. Errors are collected, so a client
//! learns about every bad field at once.

use super::slug::Slug;
use crate::{
    error::{ApiError, FieldError},
    money::{Currency, Money},
};

#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the field errors of a validation failure (other errors are returned).
    pub fn absorb<T>(&mut self, result: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(ApiError::Validation(errors)) => {
                self.0.extend(errors);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// Whether a check of `field` has failed.
    pub fn failed(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }

    /// The slug given, or one derived from the name at `/name` (unless the name itself
    /// was refused: one error per field is enough).
    pub fn slug(&mut self, given: Option<&str>, name: &str) -> Result<Option<Slug>, ApiError> {
        if given.is_none() && self.failed("/name") {
            return Ok(None);
        }
        self.absorb(Slug::given_or_derived(given, name))
    }

    /// A one-line name or label: trimmed, 1..=max characters, no control characters.
    pub fn line(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.is_empty() {
            self.fail(field, "must not be empty");
        } else if value.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.fail(field, "must not contain control characters");
        }
        value.to_owned()
    }

    /// Free text: may be empty and span lines; at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            self.fail(
                field,
                "must not contain control characters other than line breaks and tabs",
            );
        }
        value.to_owned()
    }

    /// A price the shop can sell at: its currency and not negative.
    pub fn price(&mut self, field: &str, price: &Money, currency: Currency) {
        if price.currency != currency {
            self.fail(
                format!("{field}/currency"),
                format!("prices are in {currency}"),
            );
        }
        if price.amount_minor < 0 {
            self.fail(format!("{field}/amount_minor"), "must not be negative");
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// For PATCH fields that may be set to null: absent is `None`, `null` is `Some(None)`.
/// Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem() {
        let mut checks = Checks::new();
        assert_eq!(checks.line("/name", "  Shirt ", 10), "Shirt");
        checks.line("/a", "   ", 10);
        checks.line("/b", "abcdefghijk", 10);
        checks.text("/c", "bad\u{0}byte", 100);
        checks.price("/p", &Money::new(-1, Currency::USD), Currency::EUR);
        let Err(ApiError::Validation(errors)) = checks.finish() else {
            panic!("expected a validation error")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["/a", "/b", "/c", "/p/currency", "/p/amount_minor"]);
    }

    #[test]
    fn text_keeps_line_breaks() {
        let mut checks = Checks::new();
        assert_eq!(checks.text("/d", "one\ntwo", 100), "one\ntwo");
        assert!(checks.finish().is_ok());
    }
}
