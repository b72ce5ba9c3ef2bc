//! Slugs: the URL names of categories, brands, tags and products. Lower-case ASCII letters
//! and digits in dash-separated words, with at least one letter so a slug never reads as an id.

use crate::error::ApiError;

pub const MAX_LEN: usize = 100;

/// A checked slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Checks a slug a client gave; `field` is its JSON pointer for the error.
    pub fn parse(field: &str, value: &str) -> Result<Slug, ApiError> {
        if is_valid(value) {
            Ok(Slug(value.to_owned()))
        } else {
            Err(ApiError::invalid(
                field,
                format!(
                    "must be 1 to {MAX_LEN} lower-case letters, digits and single dashes between words, \
                     with at least one letter"
                ),
            ))
        }
    }

    /// Derives a slug from a name; `field` points at the name when nothing usable is left.
    pub fn from_name(field: &str, name: &str) -> Result<Slug, ApiError> {
        let slug = slugify(name);
        if is_valid(&slug) {
            Ok(Slug(slug))
        } else {
            Err(ApiError::invalid(
                field,
                "no slug can be made from this name (it needs a latin letter); give a slug",
            ))
        }
    }

    /// The given slug when present, else one derived from the name.
    pub fn given_or_derived(given: Option<&str>, name: &str) -> Result<Slug, ApiError> {
        match given {
            Some(slug) => Slug::parse("/slug", slug),
            None => Slug::from_name("/name", name),
        }
    }
}

pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Lower-case ASCII words joined by dashes; common Latin accents lose their marks, and
/// anything else separates words. May return an empty or over-long string.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        let plain = fold(c);
        if plain.is_empty() {
            pending_dash = !out.is_empty();
            continue;
        }
        if pending_dash {
            out.push('-');
            pending_dash = false;
        }
        out.push_str(plain);
    }
    if out.len() > MAX_LEN {
        out.truncate(MAX_LEN);
        while out.ends_with('-') {
            out.pop();
        }
    }
    out
}

/// The ASCII spelling of a letter or digit, or "" for a separator.
fn fold(c: char) -> &'static str {
    const ASCII: [&str; 36] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    ];
    let lower = c.to_ascii_lowercase();
    if lower.is_ascii_lowercase() {
        return ASCII[(lower as u8 - b'a') as usize];
    }
    if c.is_ascii_digit() {
        return ASCII[26 + (c as u8 - b'0') as usize];
    }
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'œ' | 'Œ' => "oe",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'ß' => "ss",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_become_dashed_lower_case_words() {
        assert_eq!(
            slugify("Organic Cotton Oxford Shirt"),
            "organic-cotton-oxford-shirt"
        );
        assert_eq!(
            slugify("  Men's  T-Shirts & Polos "),
            "men-s-t-shirts-polos"
        );
        assert_eq!(slugify("Crème Brûlée Set"), "creme-brulee-set");
        assert_eq!(slugify("Straße 42"), "strasse-42");
        assert_eq!(slugify("日本"), "");
    }

    #[test]
    fn validity() {
        for ok in ["a", "shirts", "t-shirts", "size-42", "x1"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "A",
            "a_b",
            "a b",
            "42",
            "é",
            &"a".repeat(101),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(Slug::from_name("/name", "2024").is_err());
        assert!(Slug::parse("/slug", "Shirts").is_err());
    }

    proptest! {
        #[test]
        fn slugify_output_is_valid_or_has_no_letter(name in "\\PC{0,150}") {
            let slug = slugify(&name);
            prop_assert!(slug.len() <= MAX_LEN);
            prop_assert!(is_valid(&slug) || !slug.bytes().any(|b| b.is_ascii_lowercase()));
        }

        #[test]
        fn slugify_is_idempotent(name in "\\PC{0,80}") {
            let once = slugify(&name);
            prop_assert_eq!(slugify(&once), once.clone());
        }
    }
}
