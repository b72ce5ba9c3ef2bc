//! Email addresses as accounts are keyed by.

use std::fmt;

use serde::Serialize;

/// A plausible email address: trimmed, one `@`, a non-empty local part of at most 64
/// characters and a dotted domain, no spaces or control characters, at most 254 characters.
/// It is stored as given; uniqueness is case-insensitive (`lower(email)` in the database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadEmail {
    #[error("must be an email address such as ada@example.com")]
    Malformed,
    #[error("must be at most 254 characters")]
    TooLong,
}

impl Email {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, BadEmail> {
        // Counted before trimming, as the schema's `maxLength` is.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(BadEmail::TooLong);
        }
        let email = raw.trim();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(BadEmail::Malformed);
        };
        let sane_chars = !email.chars().any(|c| c.is_whitespace() || c.is_control());
        let sane_local = !local.is_empty() && local.chars().count() <= 64;
        let sane_domain = !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if sane_chars && sane_local && sane_domain {
            Ok(Self(email.to_owned()))
        } else {
            Err(BadEmail::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_addresses_are_kept_as_given_but_trimmed() {
        assert_eq!(
            Email::parse("  Ada.Lovelace+shop@Example.co.uk ")
                .unwrap()
                .as_str(),
            "Ada.Lovelace+shop@Example.co.uk"
        );
    }

    #[test]
    fn implausible_addresses_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("a@{}.com", "b".repeat(260));
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "a@b@example.com",
            "ada @example.com",
            "ada@example..com",
            "ada@.example.com",
            "ada@-x.com",
            "a\u{7}@example.com",
            &long_local,
        ] {
            assert_eq!(Email::parse(bad), Err(BadEmail::Malformed), "{bad:?}");
        }
        assert_eq!(Email::parse(&long), Err(BadEmail::TooLong));
    }
}
