//! The demo catalog as plain data, from a seeded random generator: the same product count
//! always gives the same catalog.

use std::collections::HashMap;

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde_json::json;
use time::{macros::datetime, Duration, OffsetDateTime};

use super::data::{Options, ADJECTIVES, COLOURS, DEPARTMENTS, SIZES, TAGS, WAREHOUSES};
use crate::catalog::slug::slugify;

const SEED: u64 = 0x5eed_5409;
/// Seeded products were "added" one every ten minutes or so from this moment on.
const FIRST_ADDED: OffsetDateTime = datetime!(2025-01-01 08:00 UTC);
/// Prices stay within 5.00 and 500.00.
const MIN_PRICE: i64 = 500;
const MAX_PRICE: i64 = 50_000;

pub struct CategorySeed {
    pub name: &'static str,
    pub slug: &'static str,
    pub parent: Option<&'static str>,
    pub position: i32,
}

pub struct VariantSeed {
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub attributes: serde_json::Value,
    /// Units on hand per warehouse, in the order of `data::WAREHOUSES`.
    pub stock: [i32; WAREHOUSES.len()],
}

pub struct ProductSeed {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub brand: String,
    pub category: &'static str,
    pub tags: Vec<&'static str>,
    pub created_at: OffsetDateTime,
    pub variants: Vec<VariantSeed>,
}

pub struct Plan {
    /// Parents before children.
    pub categories: Vec<CategorySeed>,
    /// (name, slug)
    pub brands: Vec<(&'static str, String)>,
    pub products: Vec<ProductSeed>,
}

pub fn plan(products: u32) -> Plan {
    let mut categories = Vec::new();
    for (d, department) in DEPARTMENTS.iter().enumerate() {
        categories.push(CategorySeed {
            name: department.name,
            slug: department.slug,
            parent: None,
            position: d as i32,
        });
        for (b, branch) in department.branches.iter().enumerate() {
            categories.push(CategorySeed {
                name: branch.name,
                slug: branch.slug,
                parent: Some(department.slug),
                position: b as i32,
            });
            for (l, leaf) in branch.leaves.iter().enumerate() {
                categories.push(CategorySeed {
                    name: leaf.name,
                    slug: leaf.slug,
                    parent: Some(branch.slug),
                    position: l as i32,
                });
            }
        }
    }
    let brands = DEPARTMENTS
        .iter()
        .flat_map(|d| d.brands.iter().map(|name| (*name, slugify(name))))
        .collect();

    let leaves: Vec<_> = DEPARTMENTS
        .iter()
        .flat_map(|d| {
            d.branches
                .iter()
                .flat_map(move |b| b.leaves.iter().map(move |leaf| (d, leaf)))
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut slugs: HashMap<String, u32> = HashMap::new();
    let mut seeds = Vec::with_capacity(products as usize);
    for i in 0..products as usize {
        let (department, leaf) = *leaves.choose(&mut rng).expect("there are leaves");
        let adjective = *ADJECTIVES.choose(&mut rng).unwrap();
        let material = *leaf.materials.choose(&mut rng).unwrap();
        let noun = *leaf.nouns.choose(&mut rng).unwrap();
        let brand = *department.brands.choose(&mut rng).unwrap();
        let name = format!("{adjective} {material} {noun}");

        let base = slugify(&name);
        let seen = slugs.entry(base.clone()).or_insert(0);
        *seen += 1;
        let slug = if *seen == 1 {
            base
        } else {
            format!("{base}-{seen}")
        };

        let detail = department.details.choose(&mut rng).unwrap();
        let description = format!(
            "The {} {} in {} by {brand}. {detail}",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase()
        );
        let tag_count = rng.gen_range(0..=3);
        let mut tags: Vec<&'static str> = TAGS
            .choose_multiple(&mut rng, tag_count)
            .map(|(_, slug)| *slug)
            .collect();
        tags.sort_unstable();

        let units = rng.gen_range(leaf.price.0..=leaf.price.1);
        let price = (units * 100 - 1).clamp(MIN_PRICE, MAX_PRICE);
        let variants = variants(&mut rng, leaf.options, leaf.code, i + 1, price);
        let created_at = FIRST_ADDED + Duration::seconds(i as i64 * 600 + rng.gen_range(0..300));
        seeds.push(ProductSeed {
            slug,
            name,
            description,
            brand: slugify(brand),
            category: leaf.slug,
            tags,
            created_at,
            variants,
        });
    }
    Plan {
        categories,
        brands,
        products: seeds,
    }
}

fn variants(
    rng: &mut StdRng,
    options: Options,
    code: &str,
    number: usize,
    price: i64,
) -> Vec<VariantSeed> {
    let count = rng.gen_range(1..=4);
    let mut out = Vec::with_capacity(count);
    match options {
        Options::Sizes => {
            let colour = *COLOURS.choose(rng).unwrap();
            let first = rng.gen_range(0..=SIZES.len() - count);
            for (j, size) in SIZES[first..first + count].iter().enumerate() {
                // Bigger sizes cost a little more.
                let surcharge = if size.starts_with("XX") {
                    400
                } else if *size == "XL" {
                    200
                } else {
                    0
                };
                out.push(VariantSeed {
                    sku: format!("{code}-{number:05}-{}", j + 1),
                    name: format!("{size} / {colour}"),
                    price_minor: (price + surcharge).min(MAX_PRICE),
                    attributes: json!({ "size": size, "colour": colour.to_lowercase() }),
                    stock: stock(rng),
                });
            }
        }
        Options::Colours => {
            for (j, colour) in COLOURS.choose_multiple(rng, count).enumerate() {
                out.push(VariantSeed {
                    sku: format!("{code}-{number:05}-{}", j + 1),
                    name: (*colour).to_owned(),
                    price_minor: price,
                    attributes: json!({ "colour": colour.to_lowercase() }),
                    stock: stock(rng),
                });
            }
        }
    }
    out
}

/// Mostly in stock somewhere; about one variant in twelve is sold out everywhere.
fn stock(rng: &mut StdRng) -> [i32; WAREHOUSES.len()] {
    if rng.gen_ratio(1, 12) {
        return [0, 0];
    }
    let berlin = if rng.gen_ratio(4, 5) {
        rng.gen_range(1..=120)
    } else {
        0
    };
    let amsterdam = if rng.gen_bool(0.5) {
        rng.gen_range(1..=80)
    } else {
        0
    };
    if berlin == 0 && amsterdam == 0 {
        return [rng.gen_range(1..=30), 0];
    }
    [berlin, amsterdam]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::catalog::slug::is_valid;

    #[test]
    fn the_same_count_gives_the_same_catalog() {
        let (a, b) = (plan(300), plan(300));
        let names = |p: &Plan| {
            p.products
                .iter()
                .map(|p| (p.slug.clone(), p.variants.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b));
        let stock = |p: &Plan| {
            p.products
                .iter()
                .flat_map(|p| p.variants.iter().map(|v| v.stock))
                .collect::<Vec<_>>()
        };
        assert_eq!(stock(&a), stock(&b));
    }

    #[test]
    fn the_catalog_is_well_formed() {
        let plan = plan(2000);
        assert_eq!(plan.products.len(), 2000);
        assert!(
            (25..=40).contains(&plan.categories.len()),
            "{}",
            plan.categories.len()
        );
        assert!((20..=30).contains(&plan.brands.len()));
        let slugs: HashSet<_> = plan.products.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(slugs.len(), plan.products.len(), "product slugs are unique");
        let skus: HashSet<_> = plan
            .products
            .iter()
            .flat_map(|p| p.variants.iter().map(|v| v.sku.as_str()))
            .collect();
        let variants: usize = plan.products.iter().map(|p| p.variants.len()).sum();
        assert_eq!(skus.len(), variants, "SKUs are unique");
        let mut sold_out = 0;
        for product in &plan.products {
            assert!(is_valid(&product.slug), "{}", product.slug);
            assert!((1..=4).contains(&product.variants.len()));
            for variant in &product.variants {
                assert!((MIN_PRICE..=MAX_PRICE).contains(&variant.price_minor));
                assert!(variant.stock.iter().all(|units| *units >= 0));
                sold_out += usize::from(variant.stock == [0, 0]);
            }
        }
        assert!(
            sold_out > 0 && sold_out < variants / 5,
            "{sold_out} of {variants} sold out"
        );
        let known: HashSet<_> = plan.categories.iter().map(|c| c.slug).collect();
        assert!(plan
            .categories
            .iter()
            .all(|c| c.parent.is_none_or(|p| known.contains(p))));
    }
}
