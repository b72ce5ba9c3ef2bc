//! Parsing of the free-text fields people type (names, address lines): trimmed, bounded,
//! free of control characters. Failures are collected per field, so a client learns about
//! every bad field of a request at once.

use std::fmt::Display;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};

/// Field errors gathered while parsing one request.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Keeps the value, or records the error against the JSON pointer `field`.
    pub fn check<T, E: Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result
            .map_err(|error| {
                self.0.push(FieldError {
                    field: field.into(),
                    message: error.to_string(),
                })
            })
            .ok()
    }

    /// The parsed value when every field was fine; 422 with all the field errors otherwise.
    pub fn finish<T>(self, parsed: Option<T>) -> Result<T, ApiError> {
        match parsed {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Trimmed text of 1 to `max` characters. The length limit applies before trimming, as the
/// `maxLength` of the OpenAPI schema does.
pub fn required_text(raw: &str, max: usize) -> Result<String, TextError> {
    if raw.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    let text = raw.trim();
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::ControlCharacter);
    }
    Ok(text.to_owned())
}

/// Like [`required_text`], but absent or blank text means "none".
pub fn optional_text(raw: Option<&str>, max: usize) -> Result<Option<String>, TextError> {
    match raw {
        Some(text) if text.chars().count() > max => Err(TextError::TooLong(max)),
        Some(text) if !text.trim().is_empty() => required_text(text, max).map(Some),
        _ => Ok(None),
    }
}

/// A person's name as they want to be addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct FullName(String);

impl FullName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, TextError> {
        required_text(raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(required_text("  Ada  ", 10).unwrap(), "Ada");
        assert_eq!(required_text("   ", 10), Err(TextError::Empty));
        assert_eq!(
            required_text("ééééé", 5).unwrap(),
            "ééééé",
            "characters are counted, not bytes"
        );
        assert_eq!(required_text("abcdef", 5), Err(TextError::TooLong(5)));
        assert_eq!(
            required_text(" abc  ", 5),
            Err(TextError::TooLong(5)),
            "counted before trimming"
        );
        assert_eq!(optional_text(Some("      "), 5), Err(TextError::TooLong(5)));
        assert_eq!(
            required_text("a\u{0}b", 5),
            Err(TextError::ControlCharacter)
        );
        assert_eq!(optional_text(Some("  "), 5), Ok(None));
        assert_eq!(optional_text(None, 5), Ok(None));
        assert_eq!(optional_text(Some(" x "), 5), Ok(Some("x".into())));
    }

    #[test]
    fn field_errors_are_all_collected() {
        let mut errors = FieldErrors::default();
        let a = errors.check("/a", required_text("", 5));
        let b = errors.check("/b", required_text("toolong", 5));
        let c = errors.check("/c", required_text("ok", 5));
        let Err(ApiError::Validation(fields)) = errors.finish((|| Some((a?, b?, c?)))()) else {
            panic!("expected a validation error");
        };
        let pointers: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(pointers, ["/a", "/b"]);
    }
}
