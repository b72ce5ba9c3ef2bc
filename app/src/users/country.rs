//! ISO 3166-1 alpha-2 country codes, as stored in `addresses.country`.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Two upper-case ASCII letters (`DE`, `FR`, `US`). Lower case is refused rather than fixed
/// up, so what is stored is exactly what the client sent. Only parsed codes are written,
/// so the database column is read back as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(try_from = "String", into = "String")]
#[sqlx(transparent)]
#[schema(value_type = String, pattern = "^[A-Z]{2}$", example = "DE")]
pub struct CountryCode(String);

#[derive(Debug, thiserror::Error)]
#[error("must be an ISO 3166-1 alpha-2 country code in upper case, such as \"DE\"")]
pub struct BadCountryCode;

impl CountryCode {
    pub fn parse(code: &str) -> Result<Self, BadCountryCode> {
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(BadCountryCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CountryCode {
    type Error = BadCountryCode;
    fn try_from(code: String) -> Result<Self, BadCountryCode> {
        Self::parse(&code)
    }
}

impl From<CountryCode> for String {
    fn from(code: CountryCode) -> String {
        code.0
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_two_upper_case_letters_only() {
        assert_eq!(CountryCode::parse("DE").unwrap().as_str(), "DE");
        for bad in ["de", "D", "DEU", "", "D1", "ÄÖ", " DE"] {
            assert!(CountryCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_checks_the_code() {
        assert!(serde_json::from_str::<CountryCode>("\"FR\"").is_ok());
        assert!(serde_json::from_str::<CountryCode>("\"fr\"").is_err());
    }
}
