//! The address book's request and response types, and their parsing into checked fields.

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::ApiError,
    users::{
        country::CountryCode,
        fields::{optional_text, required_text, FieldErrors},
    },
};

/// Most addresses one user may keep.
pub const MAX_ADDRESSES: i64 = 20;

const LABEL_MAX: usize = 50;
const NAME_MAX: usize = 200;
const LINE_MAX: usize = 200;
const CITY_MAX: usize = 100;
const POSTAL_CODE_MAX: usize = 20;
const PHONE_MAX: usize = 32;

/// An address of the signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Address {
    pub id: Uuid,
    pub label: Option<String>,
    pub recipient: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    pub country: CountryCode,
    pub phone: Option<String>,
    pub is_default_shipping: bool,
    pub is_default_billing: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A new address. Making it a default replaces the previous default of that kind.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    /// A name for the address in the address book, such as "Home".
    #[schema(max_length = 50, example = "Home")]
    pub label: Option<String>,
    #[schema(min_length = 1, max_length = 200, example = "Ada Lovelace")]
    pub recipient: String,
    #[schema(min_length = 1, max_length = 200, example = "12 St James's Square")]
    pub line1: String,
    #[schema(max_length = 200)]
    pub line2: Option<String>,
    #[schema(min_length = 1, max_length = 100, example = "London")]
    pub city: String,
    #[schema(max_length = 100)]
    pub region: Option<String>,
    #[schema(min_length = 1, max_length = 20, example = "SW1Y 4JH")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    #[schema(pattern = "^[A-Z]{2}$", example = "GB")]
    pub country: String,
    /// Digits, spaces and `+-().`, for the carrier.
    #[schema(
        max_length = 32,
        pattern = "^[0-9 +().-]*$",
        example = "+44 20 7946 0000"
    )]
    pub phone: Option<String>,
    #[serde(default)]
    pub is_default_shipping: bool,
    #[serde(default)]
    pub is_default_billing: bool,
}

/// Changes to an address: absent fields stay as they are; `null` clears an optional field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub label: Option<Option<String>>,
    #[schema(nullable = false, min_length = 1, max_length = 200)]
    pub recipient: Option<String>,
    #[schema(nullable = false, min_length = 1, max_length = 200)]
    pub line1: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub line2: Option<Option<String>>,
    #[schema(nullable = false, min_length = 1, max_length = 100)]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub region: Option<Option<String>>,
    #[schema(nullable = false, min_length = 1, max_length = 20)]
    pub postal_code: Option<String>,
    #[schema(nullable = false, pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 32, pattern = "^[0-9 +().-]*$")]
    pub phone: Option<Option<String>>,
    /// `true` makes this the default shipping address; `false` stops it being the default.
    #[schema(nullable = false)]
    pub is_default_shipping: Option<bool>,
    #[schema(nullable = false)]
    pub is_default_billing: Option<bool>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by default).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// The checked postal fields of an address, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFields {
    pub label: Option<String>,
    pub recipient: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    pub country: CountryCode,
    pub phone: Option<String>,
}

/// Which defaults an address holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub shipping: bool,
    pub billing: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("may contain only digits, spaces and + - ( ) . (at most 32 characters)")]
struct BadPhone;

/// The same rule as the schema's `pattern`, so the OpenAPI document tells the truth.
fn phone(raw: Option<&str>) -> Result<Option<String>, BadPhone> {
    let Some(phone) = optional_text(raw, PHONE_MAX).map_err(|_| BadPhone)? else {
        return Ok(None);
    };
    if phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        Ok(Some(phone))
    } else {
        Err(BadPhone)
    }
}

impl NewAddress {
    pub fn parse(self) -> Result<(AddressFields, Defaults), ApiError> {
        let mut errors = FieldErrors::default();
        let label = errors.check("/label", optional_text(self.label.as_deref(), LABEL_MAX));
        let recipient = errors.check("/recipient", required_text(&self.recipient, NAME_MAX));
        let line1 = errors.check("/line1", required_text(&self.line1, LINE_MAX));
        let line2 = errors.check("/line2", optional_text(self.line2.as_deref(), LINE_MAX));
        let city = errors.check("/city", required_text(&self.city, CITY_MAX));
        let region = errors.check("/region", optional_text(self.region.as_deref(), CITY_MAX));
        let postal_code = errors.check(
            "/postal_code",
            required_text(&self.postal_code, POSTAL_CODE_MAX),
        );
        let country = errors.check("/country", CountryCode::parse(&self.country));
        let phone = errors.check("/phone", phone(self.phone.as_deref()));
        let fields = (|| {
            Some(AddressFields {
                label: label?,
                recipient: recipient?,
                line1: line1?,
                line2: line2?,
                city: city?,
                region: region?,
                postal_code: postal_code?,
                country: country?,
                phone: phone?,
            })
        })();
        let defaults = Defaults {
            shipping: self.is_default_shipping,
            billing: self.is_default_billing,
        };
        errors.finish(fields).map(|fields| (fields, defaults))
    }
}

impl AddressPatch {
    /// The address as it is after the patch, checked as a whole.
    pub fn apply(self, current: &Address) -> Result<(AddressFields, Defaults), ApiError> {
        let keep = |patch: Option<Option<String>>, now: &Option<String>| {
            patch.unwrap_or_else(|| now.clone())
        };
        NewAddress {
            label: keep(self.label, &current.label),
            recipient: self.recipient.unwrap_or_else(|| current.recipient.clone()),
            line1: self.line1.unwrap_or_else(|| current.line1.clone()),
            line2: keep(self.line2, &current.line2),
            city: self.city.unwrap_or_else(|| current.city.clone()),
            region: keep(self.region, &current.region),
            postal_code: self
                .postal_code
                .unwrap_or_else(|| current.postal_code.clone()),
            country: self.country.unwrap_or_else(|| current.country.to_string()),
            phone: keep(self.phone, &current.phone),
            is_default_shipping: self
                .is_default_shipping
                .unwrap_or(current.is_default_shipping),
            is_default_billing: self
                .is_default_billing
                .unwrap_or(current.is_default_billing),
        }
        .parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "recipient": " Ada Lovelace ", "line1": "1 Main St", "city": "Paris",
            "postal_code": "75001", "country": "FR", "phone": "+33 1 23 45 67 89", "line2": "  ",
        })
    }

    #[test]
    fn a_valid_address_is_trimmed_and_blank_optionals_are_none() {
        let new: NewAddress = serde_json::from_value(valid()).unwrap();
        let (fields, defaults) = new.parse().unwrap();
        assert_eq!(fields.recipient, "Ada Lovelace");
        assert_eq!(fields.line2, None);
        assert_eq!(
            defaults,
            Defaults {
                shipping: false,
                billing: false
            }
        );
    }

    #[test]
    fn every_bad_field_is_reported_with_its_pointer() {
        let mut body = valid();
        body["country"] = "fr".into();
        body["city"] = "".into();
        body["phone"] = "call me".into();
        let new: NewAddress = serde_json::from_value(body).unwrap();
        let Err(ApiError::Validation(errors)) = new.parse() else {
            panic!("expected 422")
        };
        let pointers: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(pointers, ["/city", "/country", "/phone"]);
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let patch: AddressPatch =
            serde_json::from_value(serde_json::json!({"line2": null})).unwrap();
        assert_eq!(patch.line2, Some(None));
        assert_eq!(patch.label, None);
        assert!(serde_json::from_value::<AddressPatch>(serde_json::json!({"email": "x"})).is_err());
    }
}
