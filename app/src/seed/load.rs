//! Writes a generated plan in a handful of bulk statements (arrays through UNNEST), so ten
//! thousand products take seconds, not minutes.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{
    data::{TAGS, WAREHOUSES},
    generate::Plan,
};
use crate::money::Currency;

#[derive(Debug, Default)]
pub struct Loaded {
    pub products: usize,
    pub variants: usize,
    pub stock_rows: usize,
}

/// Ids by slug (or code) of rows that exist after an insert that skips existing ones.
type Ids = HashMap<String, i64>;

pub async fn catalog(
    conn: &mut PgConnection,
    plan: &Plan,
    currency: Currency,
) -> anyhow::Result<Loaded> {
    let warehouses = warehouses(conn).await?;
    let categories = categories(conn, plan).await?;
    let brands = brands(conn, plan).await?;
    let tags = tags(conn).await?;

    // Products, with their price already the lowest of their variants.
    let n = plan.products.len();
    let (mut slugs, mut names, mut descriptions) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut brand_ids, mut category_ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut prices, mut created): (Vec<i64>, Vec<OffsetDateTime>) =
        (Vec::with_capacity(n), Vec::with_capacity(n));
    for p in &plan.products {
        slugs.push(p.slug.clone());
        names.push(p.name.clone());
        descriptions.push(p.description.clone());
        brand_ids.push(*brands.get(&p.brand).context("brand of a seeded product")?);
        category_ids.push(
            *categories
                .get(p.category)
                .context("category of a seeded product")?,
        );
        prices.push(
            p.variants
                .iter()
                .map(|v| v.price_minor)
                .min()
                .context("a product without variants")?,
        );
        created.push(p.created_at);
    }
    let rows = sqlx::query!(
        "INSERT INTO products (slug, name, description, brand_id, category_id, price_minor, currency,
                               created_at, updated_at)
         SELECT u.slug, u.name, u.description, u.brand_id, u.category_id, u.price_minor, $7, u.created_at,
                u.created_at
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $8::timestamptz[])
              AS u(slug, name, description, brand_id, category_id, price_minor, created_at)
         RETURNING id, slug",
        &slugs,
        &names,
        &descriptions,
        &brand_ids,
        &category_ids,
        &prices,
        currency.as_str(),
        &created,
    )
    .fetch_all(&mut *conn)
    .await
    .context("inserting products")?;
    let product_ids: Ids = rows.into_iter().map(|r| (r.slug, r.id)).collect();

    let (mut tag_products, mut tag_ids) = (Vec::new(), Vec::new());
    let (mut v_products, mut skus, mut v_names, mut v_prices, mut attributes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &plan.products {
        let id = product_ids[&p.slug];
        for tag in &p.tags {
            tag_products.push(id);
            tag_ids.push(tags[*tag]);
        }
        for v in &p.variants {
            v_products.push(id);
            skus.push(v.sku.clone());
            v_names.push(v.name.clone());
            v_prices.push(v.price_minor);
            attributes.push(v.attributes.clone());
        }
    }
    sqlx::query!(
        "INSERT INTO product_tags (product_id, tag_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
        &tag_products,
        &tag_ids,
    )
    .execute(&mut *conn)
    .await
    .context("tagging products")?;
    let rows = sqlx::query!(
        "INSERT INTO variants (product_id, sku, name, price_minor, currency, attributes)
         SELECT u.product_id, u.sku, u.name, u.price_minor, $6, u.attributes
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[])
              AS u(product_id, sku, name, price_minor, attributes)
         RETURNING id, sku",
        &v_products,
        &skus,
        &v_names,
        &v_prices,
        &attributes,
        currency.as_str(),
    )
    .fetch_all(&mut *conn)
    .await
    .context("inserting variants")?;
    let variant_ids: Ids = rows.into_iter().map(|r| (r.sku, r.id)).collect();

    // Stock arrives as a restock movement, so the ledger sums to every stock level.
    let (mut s_variants, mut s_warehouses, mut s_units) = (Vec::new(), Vec::new(), Vec::new());
    for v in plan.products.iter().flat_map(|p| &p.variants) {
        for ((code, _), units) in WAREHOUSES.iter().zip(v.stock) {
            if units > 0 {
                s_variants.push(variant_ids[&v.sku]);
                s_warehouses.push(warehouses[*code]);
                s_units.push(units);
            }
        }
    }
    sqlx::query!(
        "INSERT INTO stock (variant_id, warehouse_id, on_hand)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])",
        &s_variants,
        &s_warehouses,
        &s_units,
    )
    .execute(&mut *conn)
    .await
    .context("inserting stock")?;
    sqlx::query!(
        "INSERT INTO inventory_movements (variant_id, warehouse_id, kind, on_hand_delta, reserved_delta, reason)
         SELECT u.variant_id, u.warehouse_id, 'restock', u.units, 0, 'seed'
         FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS u(variant_id, warehouse_id, units)",
        &s_variants,
        &s_warehouses,
        &s_units,
    )
    .execute(&mut *conn)
    .await
    .context("recording stock movements")?;

    Ok(Loaded {
        products: product_ids.len(),
        variants: variant_ids.len(),
        stock_rows: s_units.len(),
    })
}

async fn warehouses(conn: &mut PgConnection) -> anyhow::Result<Ids> {
    let codes: Vec<String> = WAREHOUSES
        .iter()
        .map(|(code, _)| (*code).to_owned())
        .collect();
    let names: Vec<String> = WAREHOUSES
        .iter()
        .map(|(_, name)| (*name).to_owned())
        .collect();
    sqlx::query!(
        "INSERT INTO warehouses (code, name) SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (code) DO NOTHING",
        &codes,
        &names,
    )
    .execute(&mut *conn)
    .await
    .context("inserting warehouses")?;
    let rows = sqlx::query!(
        "SELECT id, code FROM warehouses WHERE code = ANY($1)",
        &codes
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.code, r.id)).collect())
}

/// Parents come first in the plan, so each category finds its parent's path. A category
/// whose slug already exists is kept as it is.
async fn categories(conn: &mut PgConnection, plan: &Plan) -> anyhow::Result<Ids> {
    for c in &plan.categories {
        sqlx::query!(
            "WITH new AS (SELECT nextval(pg_get_serial_sequence('categories', 'id')) AS id)
             INSERT INTO categories (id, parent_id, path, name, slug, position) OVERRIDING SYSTEM VALUE
             SELECT new.id, parent.id, COALESCE(parent.path, '{}') || new.id, $2, $3, $4
             FROM new LEFT JOIN categories parent ON parent.slug = $1
             ON CONFLICT (slug) DO NOTHING",
            c.parent,
            c.name,
            c.slug,
            c.position,
        )
        .execute(&mut *conn)
        .await
        .with_context(|| format!("inserting category {}", c.slug))?;
    }
    let slugs: Vec<String> = plan.categories.iter().map(|c| c.slug.to_owned()).collect();
    let rows = sqlx::query!(
        "SELECT id, slug FROM categories WHERE slug = ANY($1)",
        &slugs
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.slug, r.id)).collect())
}

async fn brands(conn: &mut PgConnection, plan: &Plan) -> anyhow::Result<Ids> {
    let names: Vec<String> = plan
        .brands
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let slugs: Vec<String> = plan.brands.iter().map(|(_, slug)| slug.clone()).collect();
    sqlx::query!(
        "INSERT INTO brands (name, slug) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (slug) DO NOTHING",
        &names,
        &slugs,
    )
    .execute(&mut *conn)
    .await
    .context("inserting brands")?;
    let rows = sqlx::query!("SELECT id, slug FROM brands WHERE slug = ANY($1)", &slugs)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.slug, r.id)).collect())
}

async fn tags(conn: &mut PgConnection) -> anyhow::Result<Ids> {
    let names: Vec<String> = TAGS.iter().map(|(name, _)| (*name).to_owned()).collect();
    let slugs: Vec<String> = TAGS.iter().map(|(_, slug)| (*slug).to_owned()).collect();
    sqlx::query!(
        "INSERT INTO tags (name, slug) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (slug) DO NOTHING",
        &names,
        &slugs,
    )
    .execute(&mut *conn)
    .await
    .context("inserting tags")?;
    let rows = sqlx::query!("SELECT id, slug FROM tags WHERE slug = ANY($1)", &slugs)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.slug, r.id)).collect())
}
