//! Keyset pagination cursors: the sort key and id of the last row of a page, as base64url
//! JSON. Opaque to clients; a cursor is only accepted by the ordering that made it.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Where the previous page ended, in the terms of its ordering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum After {
    /// created_at in microseconds since the epoch (the database's precision).
    Newest {
        created_us: i64,
        id: i64,
    },
    PriceAsc {
        price: i64,
        id: i64,
    },
    PriceDesc {
        price: i64,
        id: i64,
    },
    Name {
        name: String,
        id: i64,
    },
    /// Search relevance, kept bit for bit (decimal text would not always round-trip).
    Score {
        #[serde(with = "f64_bits")]
        score: f64,
        id: i64,
    },
}

mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

const MAX_LEN: usize = 2048;

impl After {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursors serialize"))
    }

    pub fn invalid() -> ApiError {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this endpoint issued",
        )
    }

    pub fn decode(cursor: &str) -> Result<After, ApiError> {
        let invalid = After::invalid;
        if cursor.len() > MAX_LEN {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let after: After = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        match &after {
            After::Score { score, .. } if !score.is_finite() => Err(invalid()),
            _ => Ok(after),
        }
    }
}

pub fn wrong_ordering() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "the cursor belongs to a different sort order",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(price in any::<i64>(), id in any::<i64>(), name in "\\PC{0,40}", score in any::<f64>().prop_filter("finite", |s| s.is_finite())) {
            for after in [
                After::Newest { created_us: price, id },
                After::PriceAsc { price, id },
                After::PriceDesc { price, id },
                After::Name { name: name.clone(), id },
                After::Score { score, id },
            ] {
                prop_assert_eq!(After::decode(&after.encode()).unwrap(), after);
            }
        }

        #[test]
        fn garbage_is_a_bad_request(text in "\\PC{0,60}") {
            if let Err(error) = After::decode(&text) {
                prop_assert_eq!(error.code(), "invalid_cursor");
            }
        }
    }

    #[test]
    fn rejects_tampering() {
        for bad in [
            "",
            "!!!",
            "e30",
            &URL_SAFE_NO_PAD.encode(br#"{"price_asc":{"price":"x","id":1}}"#),
        ] {
            assert_eq!(
                After::decode(bad).unwrap_err().code(),
                "invalid_cursor",
                "{bad}"
            );
        }
    }
}
