//! The bodies of the staff product and variant endpoints, and their checks.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    fields::{nullable, Checks},
    model::ProductStatus,
    slug::{self, Slug},
};
use crate::{
    error::{ApiError, ApiResult},
    money::{Currency, Money},
};

const NAME_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 5000;
const VARIANT_NAME_MAX: usize = 100;
const MAX_VARIANTS: usize = 100;
const MAX_TAGS: usize = 20;
const MAX_ATTRIBUTES: usize = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Derived from the name when absent; needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    #[schema(max_length = 5000)]
    pub description: String,
    pub brand_id: Option<i64>,
    pub category_id: Option<i64>,
    /// `active` when absent.
    pub status: Option<ProductStatus>,
    /// Tag slugs.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub tags: Vec<String>,
    #[schema(min_items = 1, max_items = 100)]
    pub variants: Vec<NewVariant>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVariant {
    /// Unique over all variants.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub sku: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// In the shop's currency, not negative.
    pub price: Money,
    /// Properties such as `{"size": "M"}`: up to 20 string values.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Needs a letter.
    #[schema(max_length = 100, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    /// `null` removes the brand.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub brand_id: Option<Option<i64>>,
    /// `null` removes the category.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub category_id: Option<Option<i64>>,
    pub status: Option<ProductStatus>,
    /// Replaces all tags (slugs).
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// In the shop's currency, not negative.
    pub price: Option<Money>,
    /// Inactive variants are hidden and cannot be bought.
    pub active: Option<bool>,
}

/// A checked new variant.
#[derive(Debug)]
pub struct VariantInput {
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub attributes: serde_json::Value,
}

/// A checked new product.
#[derive(Debug)]
pub struct ProductInput {
    pub name: String,
    pub slug: String,
    pub description: String,
    pub brand_id: Option<i64>,
    pub category_id: Option<i64>,
    pub status: ProductStatus,
    pub tags: Vec<String>,
    pub variants: Vec<VariantInput>,
}

/// A checked product patch.
#[derive(Debug)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub brand_id: Option<Option<i64>>,
    pub category_id: Option<Option<i64>>,
    pub status: Option<ProductStatus>,
    pub tags: Option<Vec<String>>,
}

fn sku_ok(sku: &str) -> bool {
    (1..=64).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && sku.as_bytes()[0].is_ascii_alphanumeric()
}

pub fn sku_taken() -> ApiError {
    ApiError::conflict("sku_taken", "another variant already has this SKU")
}

fn check_tags(checks: &mut Checks, tags: &[String]) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        checks.fail("/tags", format!("at most {MAX_TAGS} tags"));
    }
    let mut unique = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if !slug::is_valid(tag) {
            checks.fail(format!("/tags/{i}"), "not a tag slug");
        } else if !unique.contains(tag) {
            unique.push(tag.clone());
        }
    }
    unique
}

pub fn check_variant(
    checks: &mut Checks,
    at: &str,
    variant: &NewVariant,
    currency: Currency,
) -> VariantInput {
    if !sku_ok(&variant.sku) {
        checks.fail(
            format!("{at}/sku"),
            "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        );
    }
    let name = checks.line(&format!("{at}/name"), &variant.name, VARIANT_NAME_MAX);
    checks.price(&format!("{at}/price"), &variant.price, currency);
    if variant.attributes.len() > MAX_ATTRIBUTES {
        checks.fail(
            format!("{at}/attributes"),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        );
    }
    for (key, value) in &variant.attributes {
        // JSON pointer escaping of the key (RFC 6901).
        let pointer = format!(
            "{at}/attributes/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        checks.line(&pointer, key, 40);
        checks.text(&pointer, value, 100);
    }
    VariantInput {
        sku: variant.sku.clone(),
        name,
        price_minor: variant.price.amount_minor,
        attributes: serde_json::to_value(&variant.attributes).expect("a map of strings is JSON"),
    }
}

impl NewProduct {
    pub fn check(&self, currency: Currency) -> ApiResult<ProductInput> {
        let mut checks = Checks::new();
        let name = checks.line("/name", &self.name, NAME_MAX);
        let slug = checks.slug(self.slug.as_deref(), &name)?;
        let description = checks.text("/description", &self.description, DESCRIPTION_MAX);
        let tags = check_tags(&mut checks, &self.tags);
        if self.variants.is_empty() {
            checks.fail("/variants", "a product needs at least one variant");
        } else if self.variants.len() > MAX_VARIANTS {
            checks.fail("/variants", format!("at most {MAX_VARIANTS} variants"));
        }
        let variants: Vec<VariantInput> = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| check_variant(&mut checks, &format!("/variants/{i}"), v, currency))
            .collect();
        checks.finish()?;
        let mut skus = HashSet::new();
        if !variants.iter().all(|v| skus.insert(v.sku.as_str())) {
            return Err(ApiError::conflict(
                "sku_taken",
                "two variants in the request have the same SKU",
            ));
        }
        Ok(ProductInput {
            name,
            slug: slug.expect("checked").into_string(),
            description,
            brand_id: self.brand_id,
            category_id: self.category_id,
            status: self.status.unwrap_or(ProductStatus::Active),
            tags,
            variants,
        })
    }
}

impl ProductPatch {
    pub fn check(&self) -> ApiResult<ProductChanges> {
        let mut checks = Checks::new();
        let name = self
            .name
            .as_deref()
            .map(|name| checks.line("/name", name, NAME_MAX));
        let slug = match self.slug.as_deref() {
            Some(slug) => checks
                .absorb(Slug::parse("/slug", slug))?
                .map(Slug::into_string),
            None => None,
        };
        let description = self
            .description
            .as_deref()
            .map(|d| checks.text("/description", d, DESCRIPTION_MAX));
        let tags = self
            .tags
            .as_deref()
            .map(|tags| check_tags(&mut checks, tags));
        checks.finish()?;
        Ok(ProductChanges {
            name,
            slug,
            description,
            brand_id: self.brand_id,
            category_id: self.category_id,
            status: self.status,
            tags,
        })
    }
}

impl VariantPatch {
    /// The new name, if any.
    pub fn check(&self, currency: Currency) -> ApiResult<Option<String>> {
        let mut checks = Checks::new();
        let name = self
            .name
            .as_deref()
            .map(|name| checks.line("/name", name, VARIANT_NAME_MAX));
        if let Some(price) = &self.price {
            checks.price("/price", price, currency);
        }
        checks.finish()?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(sku: &str, amount: i64, currency: Currency) -> NewVariant {
        NewVariant {
            sku: sku.into(),
            name: "Default".into(),
            price: Money::new(amount, currency),
            attributes: BTreeMap::new(),
        }
    }

    fn product(variants: Vec<NewVariant>) -> NewProduct {
        NewProduct {
            name: "Oxford Shirt".into(),
            slug: None,
            description: "A shirt.".into(),
            brand_id: None,
            category_id: None,
            status: None,
            tags: vec!["sale".into(), "sale".into()],
            variants,
        }
    }

    #[test]
    fn a_good_product_is_accepted() {
        let input = product(vec![variant("OX-1", 2999, Currency::EUR)])
            .check(Currency::EUR)
            .unwrap();
        assert_eq!(input.slug, "oxford-shirt");
        assert_eq!(input.tags, ["sale"]);
        assert_eq!(input.status, ProductStatus::Active);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut bad = product(vec![variant("", -1, Currency::USD)]);
        bad.tags.push("Not A Slug".into());
        let Err(ApiError::Validation(errors)) = bad.check(Currency::EUR) else {
            panic!("expected validation")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "/tags/2",
                "/variants/0/sku",
                "/variants/0/price/currency",
                "/variants/0/price/amount_minor"
            ]
        );
        let Err(ApiError::Validation(errors)) = product(vec![]).check(Currency::EUR) else {
            panic!()
        };
        assert_eq!(errors[0].field, "/variants");
    }

    #[test]
    fn duplicate_skus_in_one_request_conflict() {
        let p = product(vec![
            variant("A-1", 1, Currency::EUR),
            variant("A-1", 2, Currency::EUR),
        ]);
        assert_eq!(p.check(Currency::EUR).unwrap_err().code(), "sku_taken");
    }
}
